"""The trainer service: an HTTP job queue (FastAPI) and the workers that run its jobs.

    python -m services.trainer serve --host 127.0.0.1 --port 8001   # the API, no GPU needed
    CUDA_VISIBLE_DEVICES=0 python -m services.trainer worker        # one worker per GPU

The API validates and queues jobs and reports their progress; it never trains. Workers
need only the database URL and the object-store URL, so they can run on any machine.
The logic lives in `regrasp.learn.queue` and `regrasp.learn.worker`; this package is the shell.
"""
