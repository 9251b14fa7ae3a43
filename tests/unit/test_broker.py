"""The filesystem broker: a reader polling the queue never gets a message that is still being written."""

from __future__ import annotations

import multiprocessing

from kombu import Connection
from kombu.transport import filesystem

from config.broker import Transport


def _connection(folder, transport) -> Connection:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False,
               "control_folder": str(folder / "control")}
    (folder / "control").mkdir(exist_ok=True)
    return Connection(transport=transport, transport_options=options)


def _write(folder, transport, messages: int) -> None:
    writer = _connection(folder, transport).default_channel
    for n in range(messages):
        writer._put("q", {"body": "x" * 2000, "n": n})


def _race(folder, transport, messages: int = 3000) -> list[Exception]:
    """A process puts messages while this one takes them as fast as it can; the errors the reader met."""
    errors: list[Exception] = []
    reader = _connection(folder, transport).default_channel
    writer = multiprocessing.get_context("fork").Process(target=_write, args=(folder, transport, messages))
    writer.start()
    taken = 0
    while writer.is_alive() or any(folder.glob("*.msg")):
        try:
            reader._get("q")
            taken += 1
        except filesystem.Empty:
            continue
        except Exception as exc:  # what would kill a worker
            errors.append(exc)
    writer.join(timeout=30)
    assert taken + len(errors) == messages
    return errors


def test_messages_are_written_atomically(tmp_path):
    # The same race with kombu's own filesystem.Transport hands the reader empty files (seen every time
    # on this machine: JSONDecodeError, which kills a Celery worker).
    assert _race(tmp_path, Transport) == []
    assert not list(tmp_path.glob("*.part"))

