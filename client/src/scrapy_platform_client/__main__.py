"""`python -m scrapy_platform_client`: the same command line as `scrapy-platform`."""

from .cli import main

raise SystemExit(main())
