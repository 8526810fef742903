"""HTTP surface: routes, request/response models, the auth dependency."""
