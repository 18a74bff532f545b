"""Reading on several cores: batches read by forked processes, their results taken back in order.

`in_order(batches, read, processes)` yields what `read` yields for each batch, batch after batch in the
order given, while `processes` forked children do the reading (batch i by child i % processes). A child
sends each result as it is made through a pipe of its own and waits while the pipe is full, so it runs
ahead of the caller by at most a result or two: memory stays flat. An exception `read` raises is raised
here, at its batch's place in the order, so whatever came before it was taken whole. Ctrl-C reaches the
whole process group: the children ignore it and the parent, which gets it, ends them; so does an error
here, or the caller closing the iterator early.

Forked, not spawned: a child starts with the parent's modules and caches (no second start-up) and needs
nothing pickled but the results. Fork is used where the platform has it (Linux, macOS); elsewhere the
caller reads in one process (`can_fork`).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
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


_END = "end of batch"  # sent after each batch's results


def can_fork() -> bool:
    return sys.platform in ("linux", "darwin") and "fork" in multiprocessing.get_all_start_methods()


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
                except EOFError:
                    child.join()
                    raise ReaderEnded(
                        f"a reading process ended before it finished (exit code {child.exitcode})"
                    ) from None
                if isinstance(message, str) and message == _END:
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
    # Ctrl-C ignored from a child's first instruction on (it inherits the disposition), not from when it
    # gets to say so; here only for the moment of the forks.
    ours = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ours else None
    try:
        for first in range(processes):
            receiving, sending = context.Pipe(duplex=False)
            child = context.Process(
                target=_serve,
                args=(batches[first::processes], read, sending, [end for _, end in children]),
                name=f"tokenwise-reader-{first}",
                daemon=True,
            )
            try:
                child.start()
            finally:
                sending.close()  # the child's end: once the child is gone, reading this end finds it closed
            children.append((child, receiving))
    finally:
        if ours:
            signal.signal(signal.SIGINT, previous)


def _serve(
    batches: Sequence[Any], read: Callable[[Any], Iterator[Any]], sending: Connection, others: list[Any]
) -> None:
    """A child's work: read its batches in order, sending each result, then `_END`, for each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the children
    for end in others:  # the earlier children's pipes, inherited: theirs to close, not ours to hold open
        end.close()
    try:
        for batch in batches:
            for result in read(batch):
                sending.send(result)
            sending.send(_END)
    except (BrokenPipeError, ConnectionResetError):  # the parent stopped listening: nothing to tell it
        return
    except BaseException as error:
        try:
            sending.send(_Failed(error))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:  # the error itself would not pickle: its type and words, then
            sending.send(_Failed(RuntimeError(f"{type(error).__name__}: {error}")))
