"""The benchmark that checks issue 4's speed targets: ``python -m bench`` (see __main__)."""
