"""Per-project Python environments on a Scrapyd node (standard library only: it runs on the node).

A project version whose egg carries a lock (`EGG-INFO/platform-lock.txt`: exact versions and hashes,
written by the platform's deploy) runs in a virtual environment built from that lock with uv, one per
distinct lock and interpreter, shared by every version with the same lock. `crawlenv.runner` is the
Scrapyd runner (scrapyd.conf `runner = crawlenv.runner`) that builds it when missing and starts the
crawl in it; `python -m crawlenv` is the same builder as a command (the platform uses it to resolve
locks and to list spiders the way a node does). This folder is all a node needs of the platform's code.
"""
