"""The `crowdsign` command: `run` (the daemon), `check` (validate a config),
`privacy` (the processing description for a data-protection impact assessment),
`bench` (accuracy and speed of models on labelled images) and `doctor` (a field
technician's check of the whole board).

Without `-c`, the config is the first of CONFIG_SEARCH_PATH that exists: the
boot partition's crowdsign.toml (a FAT partition a technician edits on any PC
before flashing) wins over /etc/crowdsign/crowdsign.toml; with neither, the
built-in defaults apply.

Exit codes: 0 clean stop; 2 bad config, model or command line (the unit's
RestartPreventExitStatus, so a broken config never becomes a restart storm);
1 an unexpected error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from crowdsign import __version__
from crowdsign.config import (DEFAULT_CONFIG_PATH, STILL_IMAGE_MIRROR_MODES, Config, ConfigError,
                              load_config, validate)

# First existing file wins (see the module docstring).
CONFIG_SEARCH_PATH = (Path("/boot/firmware/crowdsign.toml"), DEFAULT_CONFIG_PATH)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdsign",
        description="Anonymous people counting on a camera board, pushed to platform signage.")
    parser.add_argument("--version", action="version", version=f"crowdsign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    _add_config_args(run)
    run.add_argument("--frames", type=int, metavar="N",
                     help="stop cleanly after N counted frames (tests, benchmarks)")
    run.add_argument("--json", action="store_true",
                     help="write one JSON object per published update to stdout")

    check = sub.add_parser("check", help="validate a config, its model, source and outputs")
    _add_config_args(check)

    privacy = sub.add_parser("privacy", help="the processing description for a data-protection "
                                             "impact assessment, from the live config")
    _add_config_args(privacy)
    privacy.add_argument("--json", action="store_true", help="one JSON object")

    doctor = sub.add_parser("doctor", help="check config, model, camera, outputs and the board; "
                                           "one OK/WARN/FAIL line each")
    _add_config_args(doctor)
    doctor.add_argument("--seconds", type=float, default=2.0, metavar="S",
                        help="how long to read the camera for its frame rate (default 2)")

    bench = sub.add_parser("bench", help="accuracy and speed of models on labelled images")
    bench.add_argument("--data", type=Path, required=True, metavar="DIR",
                       help="folder with labels.jsonl (image, count per line)")
    bench.add_argument("--model", type=Path, action="append", required=True, metavar="PATH",
                       help="model card or .tflite; repeat to compare models in one run")
    bench.add_argument("--tiles", default="1x1", metavar="RxC", help="detector tiles")
    bench.add_argument("--threads", type=int, default=2, metavar="N", help="TFLite threads")
    bench.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    bench.add_argument("--mirror", choices=STILL_IMAGE_MIRROR_MODES, action="append",
                       help="both: average each image's count with its mirror image's; off: "
                            "count it as it is (default: what each model card says); once for "
                            "every model, or once per --model, in order")
    bench.add_argument("--json", action="store_true", help="one JSON object per model")
    return parser


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, metavar="CONFIG",
                   help="config file (default: the first of "
                        f"{', '.join(map(str, CONFIG_SEARCH_PATH))} that exists)")
    p.add_argument("--source", metavar="URI",
                   help="override [source].uri: replay:PATH, v4l2:DEV, gst:PIPELINE, picamera2")
    p.add_argument("--model", type=Path, metavar="PATH",
                   help="override [model].path: a model card (.toml) or a .tflite beside its card")


def load_with_overrides(args: argparse.Namespace) -> Config:
    """The config file (or the defaults, when none is given or installed) with CLI overrides."""
    found = next((p for p in CONFIG_SEARCH_PATH if p.exists()), None)
    if args.config is not None:
        config = load_config(args.config)
    elif found is not None:
        config = load_config(found)
    else:
        config = Config()
    if args.source:
        uri = args.source
        if uri.startswith("replay:"):
            uri = "replay:" + str(Path(uri[len("replay:"):]).expanduser().absolute())
        config = dataclasses.replace(config, source=dataclasses.replace(config.source, uri=uri))
    if args.model:
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, path=args.model.absolute()))
    if args.source or args.model:
        problems = validate(config, str(config.path or "<command line>"))
        if problems:
            raise ConfigError(problems)
    return config


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from crowdsign.bench import bench_main

        return bench_main(args.data, args.model, args.tiles, args.threads, args.limit, args.json,
                          args.mirror or ())
    if args.command == "doctor":
        from crowdsign.doctor import doctor_main

        return doctor_main(lambda: load_with_overrides(args), camera_seconds=args.seconds)
    try:
        config = load_with_overrides(args)
    except ConfigError as e:
        for line in e.problems:
            print(f"crowdsign: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "check":
        return cmd_check(config)
    if args.command == "privacy":
        return cmd_privacy(config, json_out=args.json)
    return cmd_run(config, frames=args.frames, json_out=args.json,
                   reload_config=lambda: load_with_overrides(args))


def cmd_check(config: Config) -> int:
    """Resolve everything the config names; one line per problem, exit 2 if any."""
    from crowdsign.counting.counter import load_counter
    from crowdsign.counting.modelcard import ModelError
    from crowdsign.sinks.factory import check_outputs
    from crowdsign.sources.factory import check_source
    from crowdsign.zones import ZoneGeometry

    where = str(config.path or "<defaults>")
    problems: list[str] = []
    counter = None
    try:
        counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    except ModelError as e:
        problems.append(f"{where}: [model].path: {e}")
    problems.extend(f"{where}: {p}" for p in check_source(config.source))
    problems.extend(f"{where}: {p}" for p in check_outputs(config.outputs))
    for line in problems:
        print(f"crowdsign: {line}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    assert counter is not None
    print(f"config {where}: ok")
    print(f"model: {counter.describe()}")
    print(f"source: {config.source.uri}")
    print(f"zones: {', '.join(z.name for z in config.zone_list())}")
    for o in config.outputs:
        print(f"output: {o.type} {o.port}")
    counter.close()
    return EXIT_OK


def cmd_privacy(config: Config, *, json_out: bool) -> int:
    """What is captured, kept and sent under this config, and what enforces it."""
    import json

    from crowdsign.counting.counter import load_counter
    from crowdsign.counting.modelcard import ModelError
    from crowdsign.privacy import describe, render_text
    from crowdsign.zones import ZoneGeometry

    try:
        counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    except ModelError as e:
        print(f"crowdsign: {config.path or '<defaults>'}: [model].path: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    d = describe(config, counter.input_size, counter.input_format, counter.card.name,
                 config.model.num_threads)
    counter.close()
    print(json.dumps(d, indent=2) if json_out else render_text(d))
    return EXIT_OK


def cmd_run(config: Config, *, frames: Optional[int], json_out: bool,
            reload_config=None) -> int:
    """The daemon. `reload_config` reads the config again on SIGHUP (None: the
    same config, i.e. a SIGHUP changes nothing)."""
    stop, reload_requested = threading.Event(), threading.Event()
    _install_signal_handlers(stop, reload_requested)  # first: SIGTERM works from here on

    from crowdsign.journal import setup_logging

    log = setup_logging(config.logging.level)
    from crowdsign import guard

    guard.install(config, log)  # no off switch: see crowdsign.guard

    from crowdsign.counting.counter import load_counter
    from crowdsign.counting.modelcard import ModelError
    from crowdsign.faults import FaultSpecError, fault_from_env, with_fault
    from crowdsign.notify import Notifier
    from crowdsign.sinks.factory import make_sinks
    from crowdsign.sinks.json_stream import JsonStreamSink
    from crowdsign.sources.factory import make_source
    from crowdsign.supervisor import Reload, Supervisor
    from crowdsign.zones import ZoneGeometry

    notifier = Notifier()
    log.info("loading model %s", config.model.path)
    try:
        counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    except ModelError as e:
        log.error("model: %s", e)
        notifier.status(f"model error: {e}")
        notifier.close()
        return EXIT_BAD_INPUT
    try:  # the test-only fault switch (crowdsign.faults); off unless CROWDSIGN_FAULT is set
        counter = with_fault(counter, fault_from_env(), stop, log)
    except FaultSpecError as e:
        log.error("%s", e)
        return EXIT_BAD_INPUT
    sinks = make_sinks(config.outputs, log)
    keep = [JsonStreamSink(sys.stdout)] if json_out else []

    def new_source(cfg: Config, ctr):
        return make_source(cfg.source, model_size=ctr.input_size,
                           model_format=ctr.input_format, stop=stop, log=log)

    def applied(cfg: Config) -> None:
        guard.install(cfg, log)
        log.setLevel(cfg.logging.level.upper())

    reload = Reload(
        requested=reload_requested,
        load_config=reload_config or (lambda: config),
        make_counter=lambda cfg: load_counter(cfg.model, ZoneGeometry(cfg.zone_list())),
        make_source=new_source,
        make_sinks=lambda cfg: make_sinks(cfg.outputs, log),
        keep=keep, applied=applied)
    supervisor = Supervisor(config, source=new_source(config, counter), counter=counter,
                            sinks=sinks + keep, notifier=notifier, log=log, stop=stop,
                            max_frames=frames, reload=reload)
    try:
        return supervisor.run()
    finally:
        supervisor.counter.close()
        notifier.close()


def _install_signal_handlers(stop: threading.Event, reload: threading.Event) -> None:
    """SIGTERM/SIGINT stop the daemon; SIGHUP asks for the config to be read again.

    The handlers only set events: the frame loop acts on them between frames.
    """
    def on_stop(signum, _frame):
        if not stop.is_set():
            logging.getLogger("crowdsign").info("%s received: stopping",
                                                signal.Signals(signum).name)
        stop.set()

    def on_hup(_signum, _frame):
        logging.getLogger("crowdsign").info("SIGHUP received: reloading the config")
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


if __name__ == "__main__":
    raise SystemExit(main())
