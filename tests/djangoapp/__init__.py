"""URLs, views and tenant resolvers of the Django test project."""
