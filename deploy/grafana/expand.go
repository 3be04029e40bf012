package grafana

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Query is what Grafana sends with a panel's SQL: the dashboard's time
// range, the panel's interval (range / max data points, rounded) and the
// values of the dashboard variables.
type Query struct {
	From, To time.Time
	Interval time.Duration
	Vars     map[string]string
}

// Expand turns a panel's SQL into what ClickHouse receives from Grafana:
// first the dashboard variables, as Grafana's front end replaces them
// (${name}, ${name:sqlstring}, ${name:singlequote}, $name, [[name]]), then
// the datasource plugin's macros, as its back end (grafana/clickhouse-
// datasource pkg/macros, through sqlds) expands them. A variable or macro
// it does not know is an error, so a dashboard cannot silently send a
// query with a placeholder left in.
func Expand(sql string, q Query) (string, error) {
	s, err := expandVariables(sql, q.Vars)
	if err != nil {
		return "", err
	}
	return expandMacros(s, q)
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func expandVariables(sql string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '$' && strings.HasPrefix(sql[i:], "$__"):
			b.WriteString("$__") // a macro: the back end's
			i += 3
		case c == '$' && i+1 < len(sql) && sql[i+1] == '{':
			end := strings.IndexByte(sql[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unclosed ${ at %d", i)
			}
			name, format, _ := strings.Cut(sql[i+2:i+end], ":")
			v, err := formatVar(vars, name, format)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += end + 1
		case c == '$' && i+1 < len(sql) && isIdent(sql[i+1]):
			j := i + 1
			for j < len(sql) && isIdent(sql[j]) {
				j++
			}
			v, err := formatVar(vars, sql[i+1:j], "")
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = j
		case c == '[' && strings.HasPrefix(sql[i:], "[["):
			end := strings.Index(sql[i:], "]]")
			if end < 0 {
				return "", fmt.Errorf("unclosed [[ at %d", i)
			}
			v, err := formatVar(vars, sql[i+2:i+end], "")
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += end + 2
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// formatVar applies one of Grafana's variable formats.
func formatVar(vars map[string]string, name, format string) (string, error) {
	v, ok := vars[name]
	if !ok {
		return "", fmt.Errorf("dashboard variable %q has no value", name)
	}
	switch format {
	case "", "raw":
		return v, nil
	case "sqlstring":
		return "'" + strings.ReplaceAll(v, "'", "''") + "'", nil
	case "singlequote":
		return "'" + strings.ReplaceAll(v, "'", `\'`) + "'", nil
	}
	return "", fmt.Errorf("variable format %q of %s is not supported", format, name)
}

// The plugin's macros, by name. Times are rendered as the plugin renders
// them: seconds for DateTime, milliseconds for the _ms forms, dates as
// 'YYYY-MM-DD' in UTC.
var macros = map[string]func(q Query, args []string) (string, error){
	"fromTime":    func(q Query, _ []string) (string, error) { return dateTime(q.From), nil },
	"toTime":      func(q Query, _ []string) (string, error) { return dateTime(q.To), nil },
	"fromTime_ms": func(q Query, _ []string) (string, error) { return dateTime64(q.From), nil },
	"toTime_ms":   func(q Query, _ []string) (string, error) { return dateTime64(q.To), nil },
	"timeFilter": oneArg(func(q Query, col string) string {
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, dateTime(q.From), col, dateTime(q.To))
	}),
	"timeFilter_ms": oneArg(func(q Query, col string) string {
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, dateTime64(q.From), col, dateTime64(q.To))
	}),
	"dateFilter": oneArg(func(q Query, col string) string {
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, date(q.From), col, date(q.To))
	}),
	"dateTimeFilter": dateTimeFilter,
	"dt":             dateTimeFilter,
	"timeInterval": oneArg(func(q Query, col string) string {
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", col, intervalSeconds(q))
	}),
	"timeInterval_ms": oneArg(func(q Query, col string) string {
		return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", col, int64(math.Max(float64(q.Interval.Milliseconds()), 1)))
	}),
	"interval_s": func(q Query, _ []string) (string, error) { return fmt.Sprint(intervalSeconds(q)), nil },
}

func dateTime(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
func dateTime64(t time.Time) string {
	return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli())
}
func date(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }

// intervalSeconds is the interval in whole seconds, at least 1.
func intervalSeconds(q Query) int64 { return int64(math.Max(q.Interval.Seconds(), 1)) }

func oneArg(f func(Query, string) string) func(Query, []string) (string, error) {
	return func(q Query, args []string) (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("expected 1 argument, received %d", len(args))
		}
		return f(q, args[0]), nil
	}
}

func dateTimeFilter(q Query, args []string) (string, error) {
	if len(args) != 2 {
		return "", fmt.Errorf("expected 2 arguments, received %d", len(args))
	}
	return fmt.Sprintf("(%s >= %s AND %s <= %s) AND (%s >= %s AND %s <= %s)",
		args[0], date(q.From), args[0], date(q.To), args[1], dateTime(q.From), args[1], dateTime(q.To)), nil
}

// expandMacros replaces $__name and $__name(args): arguments are split at
// top-level commas and trimmed, as sqlds does.
func expandMacros(sql string, q Query) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(sql, "$__")
		if i < 0 {
			b.WriteString(sql)
			return b.String(), nil
		}
		b.WriteString(sql[:i])
		j := i + 3
		for j < len(sql) && isIdent(sql[j]) {
			j++
		}
		name := sql[i+3 : j]
		var args []string
		if j < len(sql) && sql[j] == '(' {
			depth, start := 0, j+1
			k := j
			for ; k < len(sql); k++ {
				switch sql[k] {
				case '(':
					depth++
				case ')':
					depth--
				case ',':
					if depth == 1 {
						args = append(args, strings.TrimSpace(sql[start:k]))
						start = k + 1
					}
				}
				if depth == 0 {
					break
				}
			}
			if depth != 0 {
				return "", fmt.Errorf("macro $__%s: unbalanced parentheses", name)
			}
			args = append(args, strings.TrimSpace(sql[start:k]))
			j = k + 1
		}
		f, ok := macros[name]
		if !ok {
			return "", fmt.Errorf("macro $__%s is not one of the ClickHouse datasource's", name)
		}
		out, err := f(q, args)
		if err != nil {
			return "", fmt.Errorf("macro $__%s: %w", name, err)
		}
		b.WriteString(out)
		sql = sql[j:]
	}
}
