"""Studies beyond the paper, each a command that records its cells and prints the table of its
doc: the teacher's table (`teacher_table`, docs/teacher.md), what each split score can see
(`sight_study`) and the detector on image sets a user might bring (`detector_sets`, both
docs/sight.md), and the classifier variants against their split's score (`students`)."""
