"""Thresholds that more than one layer applies (the train stage warns, the report flags), named once."""

#: A method that loses more than this share of its target (completion) tokens to train.max_length truncation is
#: warned about when it trains and flagged in the report.
TARGET_TOKENS_LOST_WARN = 0.01
