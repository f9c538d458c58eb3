"""ablate's built-in plugins, registered through the ``ablate`` entry-point group like any other."""
