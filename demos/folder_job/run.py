"""Run demos/folder_job on the cluster from Python, follow its output, download the results.

With `make up` running in another terminal, and COMPUTETHIS_TOKEN set to the token it
printed:

    python demos/folder_job/run.py

The same from the command line: `computethis run demos/folder_job --output 'out/**'`.
"""

from pathlib import Path

from client_sdk import run_folder

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    job = run_folder(HERE, outputs=["out/**"], exclude=["run.py"])
    print(f"job {job.id}")
    for line in job.logs(follow=True):
        print(line, end="")
    result = job.result()
    written = job.download(Path("outputs") / job.id)
    print(f"exit {result.returncode}; downloaded {', '.join(str(p) for p in written)}")
