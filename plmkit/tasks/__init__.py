"""Task formats, heads and decoding: CLUE 1.1 readers/writers/metrics, CRF, GlobalPointer, cloze, MRC, NER.

    clue.py            file names, readers, official metrics and submission writers of the 11 CLUE tasks
    crf.py             linear-chain CRF (forward algorithm, Viterbi)
    global_pointer.py  GlobalPointer span scores and their decoding
    cloze.py           CHID inputs and the one-to-one idiom assignment
    mrc.py             sliding windows, span choice, answer merging, CMRC 2018 EM / F1
    ner.py             tag schemes, character <-> token spans, entity F1
"""
