"""What every part stands on: errors, settings, time, storage, accounts, HTTP plumbing.

- `errors`: the domain errors every layer raises (mapped to HTTP statuses by `web`);
- `settings`: the one place configuration is read (`REGRASP_` environment variables);
- `clock`: UTC now and conversions;
- `store`: the database (`store.db`: tables, engine, migrations, locks) and the object
  store (`store.objects`), with the one module that builds object keys (`store.keys`);
- `accounts`, `auth`, `throttle`: users, API keys, password hashing, login throttling;
- `web`: what the HTTP services share (error body, bearer token, session dependency);
- `launch`, `supervisor`: how a service process is started and kept running.
"""
