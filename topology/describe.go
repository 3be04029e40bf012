package topology

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// storeLabels are the display names of stores, sinks and served protocols.
var storeLabels = map[string]string{
	"redis":      "Redis",
	"clickhouse": "ClickHouse",
	"http":       "HTTP clients",
}

// Mermaid draws the processor graph as a Mermaid `flowchart LR` (rendered by
// GitHub, GitLab and most Markdown viewers), so the README and docs show the
// data flow the code actually runs. Topics are boxes with double edges,
// processors rounded boxes and stores cylinders; solid arrows carry records,
// dotted lines connect a processor to the state store it keeps.
func (t *Topology) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	produced := map[string]bool{}
	for _, p := range t.Processors {
		for _, o := range p.Outputs {
			produced[o] = true
		}
	}
	external := false
	for _, tp := range t.Topics {
		if !produced[tp.Name] {
			external = true
		}
	}
	if external {
		b.WriteString("    producers([\"producers\"])\n")
	}
	for _, tp := range t.Topics {
		fmt.Fprintf(&b, "    %s[[\"%s\"]]\n", topicID(tp.Name), tp.Name)
	}
	ids := processorIDs(t.Processors)
	for i, p := range t.Processors {
		fmt.Fprintf(&b, "    %s(\"%s\")\n", ids[i], p.Name)
	}
	ends := map[string]bool{}
	for _, p := range t.Processors {
		for _, list := range [][]string{p.Stores, p.Sinks, p.Serves} {
			for _, s := range list {
				if !ends[s] {
					ends[s] = true
					fmt.Fprintf(&b, "    %s%s\n", endID(s), endShape(s))
				}
			}
		}
	}
	for _, tp := range t.Topics {
		if !produced[tp.Name] {
			fmt.Fprintf(&b, "    producers --> %s\n", topicID(tp.Name))
		}
	}
	for i, p := range t.Processors {
		id := ids[i]
		for _, in := range p.Inputs {
			fmt.Fprintf(&b, "    %s --> %s\n", topicID(in), id)
		}
		for _, out := range p.Outputs {
			fmt.Fprintf(&b, "    %s --> %s\n", id, topicID(out))
		}
		for _, s := range p.Stores {
			fmt.Fprintf(&b, "    %s -.- %s\n", id, endID(s))
		}
		for _, s := range p.Sinks {
			fmt.Fprintf(&b, "    %s --> %s\n", id, endID(s))
		}
		for _, s := range p.Serves {
			fmt.Fprintf(&b, "    %s -->|%s| %s\n", id, s, endID(s))
		}
	}
	return b.String()
}

// topicID is a Mermaid node id: letters, digits and '_' only, with a prefix
// that keeps it clear of Mermaid keywords such as "end". Validation forbids
// topic names that differ only in '.' and '_', so ids do not collide.
func topicID(name string) string { return "topic_" + mermaidSafe(name) }

func endID(name string) string { return "ext_" + mermaidSafe(name) }

func endShape(name string) string {
	label := storeLabels[name]
	if label == "" {
		label = name
	}
	if name == "http" {
		return fmt.Sprintf("([\"%s\"])", label)
	}
	return fmt.Sprintf("[(\"%s\")]", label)
}

// processorIDs returns a unique Mermaid id per processor.
func processorIDs(ps []Processor) []string {
	ids := make([]string, len(ps))
	used := map[string]bool{}
	for i, p := range ps {
		id := "proc_" + mermaidSafe(p.Name)
		if used[id] {
			id = fmt.Sprintf("%s_%d", id, i)
		}
		used[id] = true
		ids[i] = id
	}
	return ids
}

func mermaidSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// Text renders the topology as two plain tables, topics and processors, with
// the physical topic names and consumer groups the prefix gives them: what
// an operator compares with the cluster.
func (t *Topology) Text(prefix string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPHYSICAL NAME\tPARTITIONS\tRETENTION\tCLEANUP\tKEY")
	for _, tp := range t.Topics {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", tp.Name, Physical(prefix, tp.Name), tp.Partitions,
			tp.Retention, tp.CleanupPolicy(), dash(tp.Key))
	}
	_ = w.Flush()
	b.WriteString("\n")
	w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PROCESSOR\tCONSUMER GROUP\tINPUTS\tOUTPUTS\tSTORES\tSINKS\tSERVES")
	for _, p := range t.Processors {
		group := p.ConsumerGroup(prefix)
		if len(p.Inputs) == 0 {
			group = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, group, list(p.Inputs), list(p.Outputs),
			list(p.Stores), list(p.Sinks), list(p.Serves))
	}
	_ = w.Flush()
	return b.String()
}

func list(s []string) string { return dash(strings.Join(s, ", ")) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
