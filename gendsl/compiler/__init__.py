"""The compiler: bind the data, lower each variable through the registry, describe the plan."""
