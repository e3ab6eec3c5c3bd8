"""What the API and the worker both use: settings, models, database access, storage."""
