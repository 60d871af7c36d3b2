"""The SPMD benchmark's second comparator: the same exchanges between two mpi4py ranks
(``mpirun -n 2 python -m benchmarks.mpi_pingpong TRIPS NBYTES``); rank 0 prints
``{"round_trip_s", "bandwidth_Bps"}`` as JSON. Pickled ``send``/``recv`` for the small
message, buffer ``Send``/``Recv`` into a new array for the large one, as mpi4py users
would write them."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(trips: int, nbytes: int, repeats: int = 3) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    array = np.ones(nbytes // 8)
    if comm.rank == 0:
        comm.send(b"x", dest=1)
        comm.recv(source=1)
        start = time.perf_counter()
        for _ in range(trips):
            comm.send(b"x", dest=1)
            comm.recv(source=1)
        round_trip = (time.perf_counter() - start) / trips
        times = []
        for _ in range(1 + repeats):  # the first untimed
            back = np.empty_like(array)
            start = time.perf_counter()
            comm.Send(array, dest=1)
            comm.Recv(back, source=1)
            times.append((time.perf_counter() - start) / 2)
        seconds = sorted(times[1:])[repeats // 2]
        print(json.dumps({"round_trip_s": round_trip, "bandwidth_Bps": nbytes / seconds}))
        return
    for _ in range(trips + 1):
        comm.send(comm.recv(source=0), dest=0)
    for _ in range(1 + repeats):
        received = np.empty_like(array)
        comm.Recv(received, source=0)
        comm.Send(received, dest=0)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
