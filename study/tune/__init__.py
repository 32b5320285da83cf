"""The study's Ray Tune parts, one concern a file; study/launch.py drives them.

    trainable.py   what runs in a Ray worker: one search trial or one seed run of a cell
    searcher.py    StudySearch: one seeded Optuna study per cell, the seed runs, the order cells go in
    cells.py       what the searcher knows of each cell, and the launch the driver attaches
    scheduler.py   StudyASHA: successive halving per cell, decided in proposal order; tells the searcher of ends
    records.py     Tune's trials turned into study/results.py records
    restore.py     a new Tuner or the interrupted one restored; Tune's files written whole
    cluster.py     starting or joining Ray; how many trials it runs at once
    status.py      the driver's status line, once a minute
    standin.py     a trainable that sleeps instead of training, for tests and bench/bench_cluster.py
"""
