"""Command-line client of the digits service: ``digits predict PATH...``.

Depends only on the ``client`` extra (httpx, tqdm): it talks HTTP to a running service and
never imports ``service`` or torch, so it installs anywhere.
"""
