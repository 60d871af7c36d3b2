"""The communicator of SPMD jobs (client_sdk.spmd_comm): ranks as threads of this process (and
once as processes) over real local sockets, plain and TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import multiprocessing
import os
import pickle
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client_sdk.spmd_comm import Communicator, LocalRendezvous, RankFailed, Rendezvous, connect

SECRET = b"the job's secret"
JOB = "job-0001"


def run_ranks(
    size: int,
    body: Callable[[Communicator], Any],
    *,
    rendezvous: Rendezvous | None = None,
    secrets: dict[int, bytes] | None = None,
    timeout: float = 20.0,
    **options: Any,
) -> tuple[list[Any], list[BaseException | None]]:
    """Run ``body(comm)`` on ``size`` ranks (threads); each closes its communicator after,
    or aborts it with the exception raised. Every rank's result and exception."""
    rendezvous = rendezvous or LocalRendezvous()
    results: list[Any] = [None] * size
    errors: list[BaseException | None] = [None] * size

    def one(rank: int) -> None:
        comm = None
        try:
            secret = (secrets or {}).get(rank, SECRET)
            comm = connect(
                rank, size, secret, JOB, rendezvous, host="127.0.0.1", timeout=timeout, **options
            )
            results[rank] = body(comm)
            comm.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors[rank] = exc
            if comm is not None:
                comm.abort(exc)

    threads = [threading.Thread(target=one, args=(rank,), daemon=True) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 30)
        assert not thread.is_alive(), "a rank did not finish"
    return results, errors


def run_ok(size: int, body: Callable[[Communicator], Any], **options: Any) -> list[Any]:
    results, errors = run_ranks(size, body, **options)
    for error in errors:
        if error is not None:
            raise error
    return results


def ring(comm: Communicator, greeting: str = "hello") -> Any:
    comm.send(f"{greeting} from {comm.rank}", dest=(comm.rank + 1) % comm.size)
    return comm.recv(source=(comm.rank - 1) % comm.size)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_the_ring(size: int) -> None:
    results = run_ok(size, ring)
    assert results == [f"hello from {(rank - 1) % size}" for rank in range(size)]


def test_one_rank_needs_no_socket_and_no_rendezvous() -> None:
    class Nowhere:
        def publish(self, rank: int, address: tuple[str, int]) -> None:
            raise AssertionError("published")

        def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
            raise AssertionError("looked up")

    comm = connect(0, 1, SECRET, JOB, Nowhere())
    assert (comm.rank, comm.size) == (0, 1)
    data = [1, 2]
    comm.send(data, 0, tag=3)
    data.append(3)  # the message is a copy
    assert comm.recv(0, tag=3) == [1, 2]
    assert comm.bcast("b") == "b" and comm.scatter(["s"]) == "s"
    assert comm.gather(1) == [1] and comm.allgather(2) == [2]
    assert comm.reduce("x") == "x" and comm.allreduce(5) == 5
    comm.barrier()
    with pytest.raises(TimeoutError):
        comm.recv(0, timeout=0.05)
    comm.close()
    assert comm.failure() is None
    with pytest.raises(RuntimeError):
        comm.recv(0)


def test_a_thousand_messages_arrive_in_order_per_tag() -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 0:
            for number in range(1000):
                comm.send(number, 1, tag=number % 3)
            return None
        by_tag = {
            tag: [comm.recv(0, tag=tag) for _ in range(334 if tag == 0 else 333)]
            for tag in (2, 0, 1)
        }  # the other tags wait in their own queues
        return by_tag

    received = run_ok(2, body)[1]
    for tag in (0, 1, 2):
        assert received[tag] == list(range(tag, 1000, 3))


def test_tags_sends_from_many_threads_and_sends_to_itself() -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 0:

            def sender(tag: int) -> None:
                for number in range(200):
                    comm.send((tag, number), 1, tag=tag)

            threads = [threading.Thread(target=sender, args=(tag,)) for tag in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for tag in (3, 1, 0, 2):
                assert [comm.recv(0, tag) for _ in range(200)] == [(tag, n) for n in range(200)]
        comm.send("me", comm.rank, tag=7)
        with pytest.raises(ValueError):
            comm.send(1, 0, tag=-1)
        with pytest.raises(ValueError):
            comm.recv(0, tag=-1)
        with pytest.raises(ValueError):
            comm.send(1, dest=2)
        with pytest.raises(TimeoutError):
            comm.recv(1 - comm.rank, tag=5, timeout=0.1)
        comm.barrier()  # the other rank is there until both waited
        return comm.recv(comm.rank, tag=7)

    assert run_ok(2, body) == ["me", "me"]


def test_a_lambda_travels_through_dill() -> None:
    def body(comm: Communicator) -> Any:
        offset = 10
        if comm.rank == 0:
            comm.send(lambda x: x + offset, 1)
            return None
        return comm.recv(0)(5)

    assert run_ok(2, body)[1] == 15


@pytest.mark.parametrize("size", [1, 3, 4])
def test_every_collective_gives_its_sequential_result(size: int) -> None:
    ranks = list(range(size))

    def body(comm: Communicator) -> dict[str, Any]:
        rank, last = comm.rank, comm.size - 1
        out: dict[str, Any] = {}
        out["bcast"] = [
            comm.bcast(f"from {root}" if rank == root else None, root) for root in ranks
        ]
        items = [f"item {i}" for i in ranks] if rank == last else None
        out["scatter"] = comm.scatter(items, root=last)
        comm.send(("user", rank), (rank + 1) % size, tag=0)  # user traffic in between
        out["gather0"] = comm.gather(rank * 10)
        out["gather_last"] = comm.gather(rank, root=last)
        out["allgather"] = comm.allgather(rank)
        out["reduce"] = comm.reduce(rank)
        out["concat"] = comm.reduce(str(rank), op=lambda a, b: a + b, root=1 % size)
        out["allreduce"] = comm.allreduce(rank)
        out["allconcat"] = comm.allreduce(f"<{rank}", op=lambda a, b: f"({a}{b})")
        comm.barrier()
        out["user"] = comm.recv((rank - 1) % size, tag=0)
        out["arrays"] = comm.allreduce(np.full(3, rank))
        return out

    results = run_ok(size, body)
    concat = "".join(str(rank) for rank in ranks)
    nested = "<0"
    for rank in ranks[1:]:
        nested = f"({nested}<{rank})"
    for rank, out in enumerate(results):
        assert out["bcast"] == [f"from {root}" for root in ranks]
        assert out["scatter"] == f"item {rank}"
        assert out["gather0"] == ([10 * r for r in ranks] if rank == 0 else None)
        assert out["gather_last"] == (ranks if rank == size - 1 else None)
        assert out["allgather"] == ranks
        assert out["reduce"] == (sum(ranks) if rank == 0 else None)
        assert out["concat"] == (concat if rank == 1 % size else None)
        assert out["allreduce"] == sum(ranks)
        assert out["allconcat"] == nested
        assert out["user"] == ("user", (rank - 1) % size)
        assert out["arrays"].tolist() == [sum(ranks)] * 3


def test_scatter_needs_one_item_per_rank_and_roots_are_ranks() -> None:
    comm = connect(0, 1, SECRET, JOB, LocalRendezvous())
    with pytest.raises(ValueError):
        comm.scatter([1, 2])
    with pytest.raises(ValueError):
        comm.bcast(1, root=1)


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.random(2 * 1024 * 1024),  # 16 MiB of float64
        np.asfortranarray(rng.integers(0, 1 << 30, size=(1024, 1024), dtype=np.int32)),
        np.arange(100_000, dtype=np.int16)[::3],  # not contiguous: in-band
        np.zeros((0, 3), dtype=np.complex64),
    ]


def _echo_arrays(comm: Communicator) -> list[np.ndarray] | None:
    if comm.rank == 0:
        comm.send(_arrays(), 1)
        return comm.recv(1)
    comm.send(comm.recv(0), 0)
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_numpy_arrays_make_a_round_trip(tls: bool, tmp_path: Path) -> None:
    options = _tls_options(tmp_path) if tls else {}
    back = run_ok(2, _echo_arrays, **options)[0]
    for sent, got in zip(_arrays(), back, strict=True):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        if sent.flags.c_contiguous or sent.flags.f_contiguous:
            assert got.flags.f_contiguous == sent.flags.f_contiguous
        np.testing.assert_array_equal(got, sent)
    assert back[0].flags.writeable


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_both_ranks_sending_large_arrays_at_once_do_not_block(tls: bool, tmp_path: Path) -> None:
    options = _tls_options(tmp_path) if tls else {}

    def body(comm: Communicator) -> float:
        comm.send(np.full(4 * 1024 * 1024, comm.rank, dtype=np.float64), 1 - comm.rank)
        return float(comm.recv(1 - comm.rank).sum())

    assert run_ok(2, body, **options) == [4 * 1024 * 1024.0, 0.0]


def _outsider(address: tuple[str, int], message: bytes, read_greeting: bool = True) -> bytes:
    """Connect to a rank as an outsider and send ``message``: what comes back until the rank
    closes the connection (within 5 s)."""
    answer = b""
    with socket.create_connection(address, timeout=5) as sock:
        if read_greeting:
            while len(answer) < 40:
                answer += sock.recv(40 - len(answer))
            assert answer.startswith(b"CTSPMD01")
            answer = b""
        try:
            sock.sendall(message)
            while data := sock.recv(100):
                answer += data
        except ConnectionResetError:
            pass
    return answer


def test_outsiders_are_refused_and_the_mesh_still_forms() -> None:
    rendezvous = LocalRendezvous()
    results: list[Any] = [None] * 3
    threads = []

    def one(rank: int) -> None:
        comm = connect(rank, 3, SECRET, JOB, rendezvous, host="127.0.0.1", timeout=20)
        results[rank] = ring(comm)
        comm.close()

    threads.append(threading.Thread(target=one, args=(0,)))
    threads[0].start()
    address = rendezvous.lookup(0, 5)
    job = JOB.encode()

    def claim(job: bytes, rank: int, mac: bytes) -> bytes:
        return struct.pack("!H", len(job)) + job + struct.pack("!I", rank) + mac + os.urandom(32)

    assert _outsider(address, claim(job, 1, b"\0" * 32)) == b""  # wrong HMAC, a real rank
    assert _outsider(address, claim(b"another-job", 1, b"\0" * 32)) == b""
    assert _outsider(address, claim(job, 7, b"\0" * 32)) == b""  # no such rank
    assert _outsider(address, os.urandom(70_000)) == b""  # junk
    answer = _outsider(address, b"GET / HTTP/1.1\r\n\r\n", read_greeting=False)
    assert answer.startswith(b"CTSPMD01") and len(answer) == 40  # then closed
    for rank in (1, 2):
        threads.append(threading.Thread(target=one, args=(rank,)))
        threads[-1].start()
    for thread in threads:
        thread.join(30)
    assert results == ["hello from 2", "hello from 0", "hello from 1"]


def test_a_rank_with_another_secret_is_refused() -> None:
    results, errors = run_ranks(2, ring, secrets={1: b"not the secret"}, timeout=1.5)
    assert isinstance(errors[1], ConnectionError)
    assert isinstance(errors[0], TimeoutError) and "[1]" in str(errors[0])


def _failure_of(comm: Communicator, source: int) -> tuple[RankFailed, float]:
    with pytest.raises(RankFailed) as caught:
        comm.recv(source)
    return caught.value, time.monotonic()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_rank_that_aborts_wakes_every_blocked_recv_naming_it(tls: bool, tmp_path: Path) -> None:
    options = _tls_options(tmp_path) if tls else {}
    aborted: list[float] = []

    def body(comm: Communicator) -> Any:
        if comm.rank == 2:
            time.sleep(0.3)
            aborted.append(time.monotonic())
            raise ValueError("boom on rank 2")
        return _failure_of(comm, 2 if comm.rank == 0 else 0)  # 1 waits on a live rank

    results, errors = run_ranks(3, body, **options)
    assert isinstance(errors[2], ValueError)
    for failure, when in results[:2]:
        assert failure.rank == 2 and "rank 2 failed" in str(failure)
        assert isinstance(failure.error, ValueError) and str(failure.error) == "boom on rank 2"
        assert when - aborted[0] < 2.0
    assert pickle.loads(pickle.dumps(results[0][0])).rank == 2


def test_a_computing_rank_learns_of_a_failure_without_calling_recv() -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 1:
            comm.recv(0, tag=1)  # a receiver reading the connection itself...
            raise ValueError("rank 1 gives up")
        comm.send("go", 1, tag=1)
        deadline = time.monotonic() + 5
        while comm.failure() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # ...then rank 0 computes: its reader thread sees the ABORT
        return comm.failure()

    results, errors = run_ranks(2, body)
    assert isinstance(errors[1], ValueError)
    assert results[0] is not None and results[0].rank == 1


def _refuse(text: str) -> Exception:
    raise ImportError("this class is not importable here")


class Unloadable(Exception):
    """An exception that pickles but does not load on the peer."""

    def __reduce__(self) -> Any:
        return (_refuse, (str(self),))


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


@pytest.mark.parametrize("error", [Unloadable("odd"), Unpicklable("odd")], ids=type)
def test_an_error_that_does_not_travel_arrives_as_its_text(error: Exception) -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 1:
            raise error
        return _failure_of(comm, 1)[0]

    failure = run_ranks(2, body)[0][0]
    assert failure.rank == 1 and f"{type(error).__name__}: odd" in str(failure)
    assert isinstance(failure.error, RuntimeError)
    assert str(failure.error) == f"{type(error).__name__}: odd"


def test_an_abort_passes_on_the_rank_that_failed_first() -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 3:
            raise KeyError("first")
        if comm.rank == 0:
            comm.recv(3)  # raises RankFailed(3): aborted with it, rank 0 names 3 too
        time.sleep(0.5)
        return comm.failure()

    results, errors = run_ranks(4, body)
    assert isinstance(errors[0], RankFailed) and errors[0].rank == 3
    for rank in (1, 2):
        failure = errors[rank] if results[rank] is None else results[rank]
        assert failure.rank == 3 and isinstance(failure.error, KeyError)


def test_a_peer_whose_sockets_close_abruptly_has_failed() -> None:
    closed: list[float] = []

    def body(comm: Communicator) -> Any:
        comm.barrier()
        if comm.rank == 1:
            time.sleep(0.3)
            closed.append(time.monotonic())
            for link in comm._links.values():  # no CLOSE: as if its process died
                link.channel.sock.shutdown(socket.SHUT_RDWR)
            return None
        failure, when = _failure_of(comm, 1)
        assert when - closed[0] < 2.0 and comm.failure() is not None
        with pytest.raises(RankFailed):
            comm.send("late", 1)
        return failure

    results, errors = run_ranks(3, body)
    assert errors[0] is None and errors[2] is None
    assert results[0].rank == 1 and results[2].rank == 1
    assert results[0].error is None and "connection was lost" in str(results[0])


def test_a_clean_close_is_no_failure_but_ends_the_waits_on_that_rank() -> None:
    def body(comm: Communicator) -> Any:
        if comm.rank == 1:
            comm.send("last words", 0)
            return None  # closes
        assert comm.recv(1) == "last words"
        with pytest.raises(RankFailed) as caught:
            comm.recv(1)
        assert caught.value.rank == 1 and "closed its communicator" in str(caught.value)
        with pytest.raises(RankFailed):
            comm.send("anyone?", 1)
        return comm.failure()

    assert run_ok(2, body) == [None, None]


def test_ranks_listen_on_every_interface_and_advertise_an_address() -> None:
    rendezvous = LocalRendezvous()

    def one(rank: int) -> None:
        comm = connect(rank, 2, SECRET, JOB, rendezvous, advertise="127.0.0.1", timeout=10)
        results[rank] = ring(comm)
        comm.close()

    results: list[Any] = [None, None]
    threads = [threading.Thread(target=one, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == ["hello from 1", "hello from 0"]
    assert rendezvous.lookup(0, 0)[0] == "127.0.0.1"


def test_a_rank_that_never_comes_is_a_timeout() -> None:
    with pytest.raises(TimeoutError):
        connect(1, 2, SECRET, JOB, LocalRendezvous(), host="127.0.0.1", timeout=0.3)
    with pytest.raises(ValueError):
        connect(2, 2, SECRET, JOB, LocalRendezvous())


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for localhost and 127.0.0.1."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
            + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True,
            capture_output=True,
        )
        return cert, key
    secret = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(secret.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(secret, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        secret.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def _tls_options(folder: Path) -> dict[str, ssl.SSLContext]:
    """Mutual TLS, as Dask's: both sides present the certificate and verify the other's."""
    cert, key = _certificate(folder)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cert)
        context.verify_mode = ssl.CERT_REQUIRED
    return {"ssl_server": server, "ssl_client": client}


def test_the_ring_over_tls(tmp_path: Path) -> None:
    options = _tls_options(tmp_path)
    results = run_ok(3, lambda comm: (ring(comm, "secret"), comm.allreduce(comm.rank)), **options)
    assert results == [("secret from 2", 3), ("secret from 0", 3), ("secret from 1", 3)]


def test_a_rank_without_tls_is_refused_by_tls_ranks(tmp_path: Path) -> None:
    options = _tls_options(tmp_path)
    rendezvous = LocalRendezvous()
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            connect(1, 2, SECRET, JOB, rendezvous, host="127.0.0.1", timeout=2)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=plain)
    thread.start()
    with pytest.raises(TimeoutError):
        connect(0, 2, SECRET, JOB, rendezvous, host="127.0.0.1", timeout=1.5, **options)
    thread.join(10)
    assert errors and isinstance(errors[0], (ConnectionError, OSError))


class FileRendezvous:
    """Addresses in files of a folder, for ranks that are processes."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def publish(self, rank: int, address: tuple[str, int]) -> None:
        partial = self.folder / f".rank{rank}"
        partial.write_text(json.dumps(list(address)))
        os.replace(partial, self.folder / f"rank{rank}.json")

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
        path, deadline = self.folder / f"rank{rank}.json", time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank} did not publish its address")
            time.sleep(0.01)
        host, port = json.loads(path.read_text())
        return host, port


def _process_rank(rank: int, size: int, folder: str) -> None:
    comm = connect(rank, size, SECRET, JOB, FileRendezvous(folder), host="127.0.0.1", timeout=60)
    value = {"ring": ring(comm), "sum": comm.allreduce(comm.rank), "pid": os.getpid()}
    value["array"] = float(comm.bcast(np.arange(1000.0) if rank == 0 else None).sum())
    comm.close()
    (Path(folder) / f"result{rank}.json").write_text(json.dumps(value))


def test_ranks_in_separate_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_process_rank, args=(rank, 3, str(tmp_path))) for rank in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    results = [json.loads((tmp_path / f"result{rank}.json").read_text()) for rank in range(3)]
    assert [result["ring"] for result in results] == [f"hello from {r}" for r in (2, 0, 1)]
    assert {result["sum"] for result in results} == {3}
    assert {result["array"] for result in results} == {sum(range(1000))}
    assert len({result["pid"] for result in results}) == 3


def _measure(comm: Communicator) -> dict[str, float] | None:
    """Rank 0: the small-message round trip (s) and the 64 MiB array rate (bytes/s)."""
    other = 1 - comm.rank
    for _ in range(50):  # warm up
        comm.send(b"x", other) if comm.rank == 0 else comm.send(comm.recv(other), other)
        if comm.rank == 0:
            comm.recv(other)
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        if comm.rank == 0:
            comm.send(1, other)
            comm.recv(other)
        else:
            comm.send(comm.recv(other), other)
    round_trip = (time.perf_counter() - start) / rounds
    array = np.ones(8 * 1024 * 1024)  # 64 MiB
    rates = []
    for _ in range(3):
        comm.barrier()
        start = time.perf_counter()
        if comm.rank == 0:
            comm.send(array, other)
            comm.recv(other)
            rates.append(array.nbytes / (time.perf_counter() - start))
        else:
            got = comm.recv(other)
            comm.send(got.shape, other)
    return {"round_trip": round_trip, "rate": max(rates)} if comm.rank == 0 else None


def test_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = run_ok(2, _measure)[0]
    tls = run_ok(2, _measure, **_tls_options(tmp_path))[0]
    with capsys.disabled():
        for name, figures in (("plain", plain), ("tls", tls)):
            print(
                f"\nspmd_comm {name}: small-message round trip "
                f"{figures['round_trip'] * 1e6:.0f} us, 64 MiB numpy array at "
                f"{figures['rate'] / 2**30:.2f} GiB/s"
            )
    assert plain["rate"] > 0 and tls["rate"] > 0
