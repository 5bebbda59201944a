"""The marketplace REST API (/api/v1): one route table, its handlers, models and OpenAPI."""
