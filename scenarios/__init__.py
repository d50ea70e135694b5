"""Ready scenarios, one module each; every module also runs alone with ``locust -f``."""
