"""The one test harness: how tests and benches start services and seed data.

Starting things:
- `inprocess`: an ASGI app under uvicorn in a thread (`serve`, `InProcessServer`);
- `processes`: a service as a process from `regrasp.platform.launch` (`start_service`,
  `ServiceProcess`, `start_orchestrator`), with its log file and a wait for readiness;
- `cluster`: services as killable processes over one database and store (`Cluster`),
  a TCP proxy to cut (`TcpProxy`); `launchers` parks an orchestrator or worker on cue;
- `stack`: the stack of `regrasp up` (`regrasp.demo.local_stack` under the supervisor);
- `postgres`: a scratch database on a server, or a throwaway server to stop and start;
- `browser`: the review UI in headless Chromium; `ui`: the review UI under AppTest;
- `ports`: free ports.

Data and drivers:
- `seeders`: datasets and review rounds written to the database or imported by the API;
- `rounds`: a round on a `Cluster` reviewed by the simulated reviewer and checked;
- `annotators`: many annotators over HTTP; `load`: the load scenario on a `LoadStack`;
- `state`: snapshots proving a refused request wrote nothing.

Pytest fixtures (plugins listed in `tests/conftest.py`): `databases` (PostgreSQL and
SQLite), `objects` (moto's S3 server, a `file://` folder), `samples` (the real Jacquard
samples). The benches in `bench/` import the same modules; `scripts/` holds thin command
lines over them.
"""
