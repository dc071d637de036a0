"""Frame sources: the Pi camera, V4L2/GStreamer cameras, and recorded footage."""
