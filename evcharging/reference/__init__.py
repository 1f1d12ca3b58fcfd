"""Reference data (charging stations, vehicles): CSV or synthetic rows -> validated documents -> MongoDB.

Plain Python, no Dagster: :mod:`.table` reads and validates any reference CSV, :mod:`.stations` and
:mod:`.vehicles` define the two formats and their documents, :mod:`.synthetic` generates data of the
same shape, :mod:`.datasets` ties each format to its collection, :mod:`.store` loads MongoDB.
"""
