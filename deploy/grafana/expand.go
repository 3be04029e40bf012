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
	// Vars are the values of single-value variables (a text box, a query
	// variable without multi-value).
	Vars map[string]string
	// Multi are the selections of multi-value variables. Grafana hands
	// the plugin an array even for one selected value, and for "All" (a
	// variable without a custom all value) every option: put those here
	// and name the variable in All.
	Multi map[string][]string
	// All names the multi-value variables whose selection is "All", which
	// $__conditionalAll tests.
	All map[string]bool
}

// Expand turns a panel's SQL into what ClickHouse receives from Grafana
// 12 with the ClickHouse datasource plugin (the versions docker-compose.yml
// runs). The front end (plugin's applyTemplateVariables) first replaces
// $__conditionalAll(condition, $var), then the dashboard variables as
// Grafana's template service does (${name}, ${name:format}, $name,
// [[name]], [[name:format]], the built-in $__from, $__to, $__interval and
// $__interval_ms), with the plugin's default format for a variable written
// without one; then the back end expands the plugin's macros
// (pkg/macros through sqlutil.Interpolate). A variable or macro it does
// not know is an error, where Grafana would leave the text in the query
// for ClickHouse to reject: a dashboard cannot silently send a query with
// a placeholder left in.
func Expand(sql string, q Query) (string, error) {
	s, err := conditionalAll(sql, q)
	if err != nil {
		return "", err
	}
	if s, err = expandVariables(s, q); err != nil {
		return "", err
	}
	return expandMacros(s, q)
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// conditionalAll expands the plugin's front-end macro
// $__conditionalAll(condition, $var): the condition, or 1=1 when the
// variable's value is empty or "All". Like the plugin, it works from the
// last occurrence back and replaces the text between the parentheses as
// written (the condition is not trimmed).
func conditionalAll(sql string, q Query) (string, error) {
	const macro = "$__conditionalAll("
	for {
		i := strings.LastIndex(sql, macro)
		if i < 0 {
			return sql, nil
		}
		open := i + len(macro) - 1
		args, end := splitArgs(sql[open:])
		if end < 0 || len(args) != 2 {
			return "", fmt.Errorf("$__conditionalAll takes a condition and a variable ($__conditionalAll(cond, $var)), got %q", sql[i:])
		}
		name := strings.TrimSpace(args[1])
		name = strings.TrimPrefix(name, "$")
		if strings.HasPrefix(name, "{") && strings.HasSuffix(name, "}") && !strings.Contains(name, ":") {
			name = name[1 : len(name)-1]
		}
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return r > 127 || !isIdent(byte(r)) }) >= 0 {
			// The plugin's pattern finds no variable: the condition stays.
			return "", fmt.Errorf("$__conditionalAll: %q is not a variable the plugin recognises ($name or ${name}, no format)", args[1])
		}
		phrase := args[0]
		_, single := q.Vars[name]
		_, multi := q.Multi[name]
		switch {
		case !single && !multi:
			return "", fmt.Errorf("$__conditionalAll: dashboard variable %q has no value", name)
		case q.All[name] || single && q.Vars[name] == "":
			phrase = "1=1"
		}
		sql = sql[:i] + phrase + sql[open+end:]
	}
}

// splitArgs splits "(a, b(c, d))..." at its top-level commas, untrimmed;
// end is the length up to and including the closing parenthesis (-1: none).
func splitArgs(s string) (args []string, end int) {
	depth, start := 0, 1
	for k := 0; k < len(s); k++ {
		switch s[k] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return append(args, s[start:k]), k + 1
			}
		case ',':
			if depth == 1 {
				args = append(args, s[start:k])
				start = k + 1
			}
		}
	}
	return nil, -1
}

// builtins are Grafana's global variables that reach a panel's query: the
// time range in Unix milliseconds and the interval (as text, like "5m",
// and in milliseconds).
func builtin(name string, q Query) (string, bool) {
	switch name {
	case "__from":
		return fmt.Sprint(q.From.UnixMilli()), true
	case "__to":
		return fmt.Sprint(q.To.UnixMilli()), true
	case "__interval":
		return intervalText(q.Interval), true
	case "__interval_ms":
		return fmt.Sprint(q.Interval.Milliseconds()), true
	}
	return "", false
}

// intervalText is Grafana's rendering of an interval: its largest whole
// unit (rangeutil.secondsToHms).
func intervalText(d time.Duration) string {
	s := d.Seconds()
	for _, u := range []struct {
		name string
		secs float64
	}{{"y", 31536000}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}, {"ms", 0.001}} {
		if n := math.Floor(s / u.secs); n >= 1 {
			return fmt.Sprintf("%d%s", int64(n), u.name)
		}
	}
	return "less than a millisecond"
}

func expandVariables(sql string, q Query) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '$' && i+1 < len(sql) && sql[i+1] == '{':
			end := strings.IndexByte(sql[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unclosed ${ at %d", i)
			}
			name, format, _ := strings.Cut(sql[i+2:i+end], ":")
			v, err := formatVar(q, name, format)
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
			name := sql[i+1 : j]
			if strings.HasPrefix(name, "__") {
				if v, ok := builtin(name, q); ok {
					b.WriteString(v)
				} else {
					b.WriteString(sql[i:j]) // a macro: the back end's
				}
				i = j
				continue
			}
			v, err := formatVar(q, name, "")
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
			name, format, _ := strings.Cut(sql[i+2:i+end], ":")
			v, err := formatVar(q, name, format)
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

// formatVar renders a variable as Grafana's format registry does; without
// a format, the ClickHouse plugin's default: a multi-value selection as
// 'a','b' (quoted, not escaped), a single value as it is.
func formatVar(q Query, name, format string) (string, error) {
	if v, ok := builtin(name, q); ok && format == "" {
		return v, nil
	}
	vals, multi := q.Multi[name]
	if !multi {
		v, ok := q.Vars[name]
		if !ok {
			return "", fmt.Errorf("dashboard variable %q has no value", name)
		}
		vals = []string{v}
	}
	quote := func(open string, esc func(string) string) string {
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = open + esc(v) + open
		}
		return strings.Join(out, ",")
	}
	switch format {
	case "":
		if multi {
			return quote("'", func(v string) string { return v }), nil
		}
		return vals[0], nil
	case "raw", "csv":
		// raw is String(value): an array's values joined by commas.
		return strings.Join(vals, ","), nil
	case "sqlstring":
		return quote("'", strings.NewReplacer("'", "''", `"`, `\"`).Replace), nil
	case "singlequote":
		return quote("'", strings.NewReplacer("'", `\'`).Replace), nil
	case "doublequote":
		return quote(`"`, strings.NewReplacer(`"`, `\"`).Replace), nil
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
