package jobs

// logTail holds the last lines a function wrote to stderr. Offsets are
// absolute (the number of lines written before a line), so a client that
// asks from an offset the tail no longer holds learns how many it missed
// instead of silently getting other lines.
type logTail struct {
	lines []string // lines[i] has absolute offset base+i
	base  int
	max   int
}

// add appends a line, dropping the oldest once max lines are held.
func (l *logTail) add(line string) {
	if len(l.lines) == l.max {
		// Shift in place; max is small, and this keeps one backing array
		// instead of growing a new one per dropped line.
		copy(l.lines, l.lines[1:])
		l.lines[len(l.lines)-1] = line
		l.base++
		return
	}
	l.lines = append(l.lines, line)
}

// end is the offset of the next line to be written.
func (l *logTail) end() int { return l.base + len(l.lines) }

// since returns a copy of the lines from offset on, and how many lines
// between offset and the first returned line are no longer held.
func (l *logTail) since(offset int) (lines []string, dropped int) {
	if offset < l.base {
		dropped = l.base - offset
		offset = l.base
	}
	i := offset - l.base
	if i >= len(l.lines) {
		return []string{}, dropped
	}
	return append([]string(nil), l.lines[i:]...), dropped
}
