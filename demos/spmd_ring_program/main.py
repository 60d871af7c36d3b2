"""DistrComp's ring as an SPMD program: this file runs on N workers at once; node i
sends a string to node (i + 1) % N and receives one from node (i - 1) % N.

Run it from the repository (``make up`` in another shell prints the token)::

    COMPUTETHIS_TOKEN=<token> computethis run demos/spmd_ring_program --ranks 2

Each rank's output is printed under a ``[rank r]`` line. Alone (``python main.py``) it is
a ring of one node.
"""

import socket
import time

from client_sdk import spmd

started = time.perf_counter()
comm = spmd.world()
my_id, nodes = comm.rank, comm.size
nxt = (my_id + 1) % nodes
pre = (my_id - 1) % nodes

print(f"My ID is {my_id} of {nodes}, on {socket.gethostname()}")
comm.send(f"Next to {my_id} is {nxt}", dest=nxt)
print(comm.recv(source=pre))
comm.barrier()
if my_id == 0:
    print(f"Total time : {time.perf_counter() - started:.3f} s")
