"""Facts about the Kaggle "heartbeat" data set (Kachuee et al. 2018) that the rest of the code reads."""

BEAT_LEN = 187  # samples a beat: 1.5 s at 125 Hz, zero-padded
SAMPLE_RATE_HZ = 125

ARRHYTHMIA_CLASSES = ("N", "S", "V", "F", "Q")  # AAMI EC57 classes, label = index
MI_CLASSES = ("normal", "MI")  # ptbdb_normal.csv -> 0, ptbdb_abnormal.csv -> 1

TASKS = ("arrhythmia", "mi")
OVERSAMPLING = ("none", "smote", "smote-tomek")

MITBIH_TRAIN = "mitbih_train.csv"
MITBIH_TEST = "mitbih_test.csv"
PTB_NORMAL = "ptbdb_normal.csv"
PTB_ABNORMAL = "ptbdb_abnormal.csv"
DEMO_MANIFEST = "demo.json"  # beside demo CSVs: what data.demo wrote (data/demo.py)
DEMO_ROWS = (100, 1_000_000)  # rows of a demo mitbih_train.csv, at least and at most (1e6: 4.7 GB, 11 x the real)
MIN_LIMIT = 10  # beats kept of a CSV, at least (--limit): a stratified split needs some of every class

TASK_FILES = {"arrhythmia": (MITBIH_TRAIN, MITBIH_TEST), "mi": (PTB_NORMAL, PTB_ABNORMAL)}
TASK_CLASSES = {"arrhythmia": ARRHYTHMIA_CLASSES, "mi": MI_CLASSES}

KAGGLE_DATASET = "shayanfazeli/heartbeat"

# Size in bytes and sha256 of each file as Kaggle serves it (LF line endings).
KAGGLE_FILES = {
    MITBIH_TRAIN: (411503800, "ae4c80504ad1d0be5c3f1b3c6ef02851e4d1b05d05805fce2a73374f083a700e"),
    MITBIH_TEST: (102892400, "f3fdb3fd318275e653fac082b617d8c1ef09fca619a0606dc22c863451c77333"),
    PTB_ABNORMAL: (49378200, "27b4a37cd6dbcede0900cde3df02291f21e7538085d54e6b33abb91f4a5cf912"),
    PTB_NORMAL: (19016200, "033d355e76e9f65f692fa398c5b24e357d004fab328c97db5160591a2eafe48c"),
}
MODEL_NAMES = ("cnet", "seq", "bilstm", "bigru")  # models/registry.py builds each; here, so naming them imports no torch
TRANSFER_MODES = ("frozen", "finetune")  # MI transfer: body frozen (the original) or fine-tuned
PHYSIONET_BUILD = "physionet_build.json"  # written by data.physionet beside the CSVs it builds
