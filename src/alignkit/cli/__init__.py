"""The ``alignkit`` command line. Each module here that defines ``add_parser(subparsers)`` is a subcommand."""
