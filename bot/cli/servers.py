"""`fortnox-bot serve | demo | sandbox`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the bot (HTTP server; Socket Mode when SLACK_APP_TOKEN is set)")
    p.set_defaults(run=_serve)
    p = sub.add_parser("worker", help="run only the bot's background jobs (diagnoses, Slack messages, replays); "
                                      "for `serve` processes started with FORTNOX_BOT_RUN_JOBS=false")
    p.set_defaults(run=_worker)
    p = sub.add_parser("demo", help="the whole loop on this machine with no accounts")
    p.set_defaults(run=_demo)
    p = sub.add_parser("sandbox", help="run the local Fortnox-compatible sandbox alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(run=_sandbox)


def _serve(args) -> int:
    from bot.web.serve import serve

    return serve()


def _worker(args) -> int:
    from bot.jobs.process import run_worker

    return run_worker()


def _demo(args) -> int:
    from bot.demo import main

    return main()


def _sandbox(args) -> int:
    from bot.sandbox.runner import main

    main(host=args.host, port=args.port)
    return 0
