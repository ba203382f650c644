pytest_plugins = ["services.core.testing", "services.core.private_servers"]
