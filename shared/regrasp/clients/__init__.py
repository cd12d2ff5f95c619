"""Typed HTTP clients of the four services, with the pydantic schemas they share.

Services never import each other; they talk through these clients. Each client module
holds the request/response schemas of its service, so the service and its callers use
the same types.
"""
