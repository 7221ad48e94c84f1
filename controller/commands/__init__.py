"""One module per `cvqkd` subcommand; each exposes `register(subparsers)`."""
