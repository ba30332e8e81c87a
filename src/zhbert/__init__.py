"""zhbert: pretrain Chinese BERT models from scratch and study how they learn."""

__version__ = "0.1.0"
