"""crowdsign: anonymous people counting on camera boards, pushed to platform signage.

Pipeline, one module a stage: sources -> counting -> zones -> levels -> sinks,
run by the supervisor, which owns systemd notification, the watchdog and shutdown.
"""

__version__ = "0.1.0"
