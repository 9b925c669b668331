"""Code that runs outside the host process: the executor server started in an env's python."""
