"""Kombu's filesystem transport, with every message written atomically.

kombu writes a message file in place (create it, then write the payload). A worker polling the folder
can move and read the file between the two, get an empty payload, and die of it ("Unrecoverable
error: JSONDecodeError"), which takes down every task after it. Here a message is written under a name
the reader skips (it only takes `<...>.<queue>.msg`) and renamed into place once complete.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    """The filesystem channel, whose `_put` renames a complete file into the queue folder."""

    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """`filesystem://` with atomic message files (CELERY_BROKER_TRANSPORT points here)."""

    Channel = Channel
