"""The HTTP contract of the Regrasp services: request and response schemas, one module per
resource. The services declare their routes with these models and the typed clients
(`regrasp.clients`) read their answers with the same ones, so the two cannot drift apart.

Orchestrator: `accounts` (login, users, API keys), `models` (the registry), `datasets`
(datasets, imports, image kinds), `versions` (diff, rollback, export), `review` (the queue
and its statistics), `rounds`, `refinement` (label noise, stopping advice, audits),
`campaigns`. Trainer: `jobs`. Inference: `predict`. Shared: `common` (UTC times, the error
body, `fields_of`).

Schema families follow the house pattern: `XCreate` is what a caller sends, `XPublic` what
it gets back. Where the library has a dataclass for an answer (`AnnotatorStats`,
`RoundRefinement`, `ApplyPreview`, ...), the public schema is built from its fields
(`common.fields_of`) and filled with `model_validate(obj)`, so there is one field list.
These modules import the library's data types only, never a service, a client or torch.
"""
