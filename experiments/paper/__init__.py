"""The paper's reproduction: Table 1 and Fig. 4 as one resumable sweep (`sweep`, its cells in
`cells`), the tables and figures of its finished cells (`report`), the paper's own Table 1
numbers (`table`, `resources/paper_table1.csv`), and the diagnostics read from sweep workdirs:
test curves (`curves`), the ablation table (`ablation`) and the report-to-report spread
(`spread`). The same sweep also runs one config over many classes (`configs/classes.py`)."""
