"""HTTP API: the REST wire format, its routing and validation, and the OpenAPI document."""
