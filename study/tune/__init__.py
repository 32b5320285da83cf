"""The study's Ray Tune parts, one concern a file; study/launch.py drives them.

    trainable.py   what runs in a Ray worker: one search trial or one seed run of a cell
    searcher.py    StudySearch: one seeded Optuna study per cell, the seed runs, the order cells go in
    scheduler.py   StudyASHA: successive halving per cell, decided in proposal order; writes finished cells
    records.py     Tune's trials turned into study/results.py records
    restore.py     a new Tuner or the interrupted one restored; Tune's files written whole
    cluster.py     starting or joining Ray; how many trials it runs at once
"""
