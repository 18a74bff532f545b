"""Reading on several cores: batches read by forked processes, their results taken back in order.

`in_order(batches, read, processes)` yields what `read` yields for each batch, batch after batch in the
order given, while `processes` forked children do the reading (batch i by child i % processes). A child
sends each result as it is made through a pipe of its own and waits while the pipe is full, so it runs
ahead of the caller by at most a result or two: memory stays flat. An exception `read` raises is raised
here, at its batch's place in the order, so whatever came before it was taken whole. Ctrl-C reaches the
whole process group: the children ignore it and the parent, which gets it, ends them; so does an error
here, or the caller closing the iterator early. A parent that dies without ending them (killed) leaves
them a pipe that no one reads: their next send fails and they end.

Forked, not spawned: a child starts with the parent's modules and caches (no second start-up) and needs
nothing pickled but the results. Fork is used where the platform has it (Linux, macOS); elsewhere the
caller reads in one process (`can_fork`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

B = TypeVar("B")
T = TypeVar("T")


class ReaderEnded(RuntimeError):
    """A reading process ended before sending all its results (killed, or out of memory)."""


@dataclass
class _Failed:
    error: BaseException


class _End:
    """Sent after each batch's results."""


def can_fork() -> bool:
    return sys.platform in ("linux", "darwin") and "fork" in multiprocessing.get_all_start_methods()


def cores() -> int:
    """The cores this process may run on (its affinity, where the platform tells), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def in_order(batches: Sequence[B], read: Callable[[B], Iterator[T]], processes: int) -> Generator[T, None, None]:
    """What `read` yields for each of `batches`, in order, read by `processes` forked processes."""
    children: list[tuple[Any, Connection]] = []
    try:
        _start(children, batches, read, processes)
        for number in range(len(batches)):
            child, receiving = children[number % processes]
            while True:
                try:
                    message = receiving.recv()
                except (EOFError, OSError):  # the pipe closed, perhaps in the middle of a result
                    child.join()
                    raise ReaderEnded(
                        f"a reading process ended before it finished (exit code {child.exitcode})"
                    ) from None
                if isinstance(message, _End):
                    break
                if isinstance(message, _Failed):
                    raise message.error
                yield message
    finally:
        for child, receiving in children:
            receiving.close()
            if child.is_alive():
                child.kill()
            child.join()


def _start(
    children: list[tuple[Any, Connection]], batches: Sequence[Any], read: Callable[[Any], Any], processes: int
) -> None:
    """Fork the readers (added to `children` one by one, so that a failure still ends those started)."""
    context = multiprocessing.get_context("fork")
    for stream in (sys.stdout, sys.stderr):  # a child flushes them as it ends: nothing of ours twice
        stream.flush()
    # Ctrl-C is held back while forking: a child inherits the mask and ignores the signal before it lets it
    # in, and one pressed meanwhile reaches this process when the mask is lifted.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for first in range(processes):
            receiving, sending = context.Pipe(duplex=False)
            child = context.Process(
                target=_serve,
                args=(batches[first::processes], read, sending, [end for _, end in children] + [receiving]),
                name=f"tokenwise-reader-{first}",
                daemon=True,
            )
            try:
                child.start()
            finally:
                sending.close()  # the child's end: once the child is gone, reading this end finds it closed
            children.append((child, receiving))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _serve(batches: Sequence[Any], read: Callable[[Any], Iterator[Any]], sending: Connection, ends: list[Any]) -> None:
    """A child's work: read its batches in order, sending each result, then `_End()`, for each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the children
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    for end in ends:  # the receiving ends, inherited: held open here, a dead parent's pipe would never break
        end.close()
    try:
        for batch in batches:
            for result in read(batch):
                sending.send(result)
            sending.send(_End())
    except (BrokenPipeError, ConnectionResetError):  # the parent stopped listening (or died): nothing to tell
        return
    except BaseException as error:
        with suppress(BrokenPipeError, ConnectionResetError):
            sending.send(_Failed(_portable(error)))


def _portable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling both ways, else a RuntimeError with its type and words."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
