"""Running and operating the bridge: health and readiness, deployment configs, the local stack."""
