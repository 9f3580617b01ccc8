"""Steps that feed the scoring service's online store: :mod:`pipelines.online.seed` (``recops online seed``).

Importing this package imports nothing heavy.
"""
