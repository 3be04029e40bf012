package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The Grafana dashboard model, as much of it as the generated dashboards
// use. Struct fields keep the output's key order stable.

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var ds = dsRef{Type: DatasourceType, UID: DatasourceUID}

type target struct {
	Datasource    dsRef  `json:"datasource"`
	EditorType    string `json:"editorType"`
	Format        int    `json:"format"`
	QueryType     string `json:"queryType"`
	RawSQL        string `json:"rawSql"`
	RefID         string `json:"refId"`
	PluginVersion string `json:"pluginVersion"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type panelJSON struct {
	ID          int            `json:"id"`
	Type        Kind           `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  dsRef          `json:"datasource"`
	GridPos     gridPos        `json:"gridPos"`
	FieldConfig map[string]any `json:"fieldConfig"`
	Options     map[string]any `json:"options"`
	Targets     []target       `json:"targets"`
}

type variableJSON struct {
	Name       string `json:"name"`
	Label      string `json:"label"`
	Type       string `json:"type"`
	Hide       int    `json:"hide"`
	Query      string `json:"query"`
	Definition string `json:"definition,omitempty"`
	Datasource *dsRef `json:"datasource,omitempty"`
	Refresh    int    `json:"refresh,omitempty"`
	Multi      bool   `json:"multi,omitempty"`
	IncludeAll bool   `json:"includeAll,omitempty"`
	Current    struct {
		Text  any `json:"text"` // a string, or a list for a multi-value variable
		Value any `json:"value"`
	} `json:"current"`
}

type dashboardJSON struct {
	UID           string            `json:"uid"`
	Title         string            `json:"title"`
	Description   string            `json:"description"`
	Tags          []string          `json:"tags"`
	Editable      bool              `json:"editable"`
	GraphTooltip  int               `json:"graphTooltip"`
	Refresh       string            `json:"refresh"`
	SchemaVersion int               `json:"schemaVersion"`
	Time          map[string]string `json:"time"`
	Templating    struct {
		List []variableJSON `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []any `json:"list"`
	} `json:"annotations"`
	Links  []any       `json:"links"`
	Panels []panelJSON `json:"panels"`
}

// timeSeriesKinds are the panels whose query the plugin returns as time
// series (long rows turned wide by the time column).
func queryType(k Kind) (string, int) {
	if k == TimeSeries {
		return "timeSeries", 0
	}
	return "table", 1
}

func options(k Kind) map[string]any {
	reduce := map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}
	switch k {
	case Stat:
		return map[string]any{"colorMode": "value", "graphMode": "none", "justifyMode": "auto", "textMode": "value_and_name", "reduceOptions": reduce}
	case PieChart:
		return map[string]any{"pieType": "donut", "legend": map[string]any{"displayMode": "table", "placement": "right", "values": []string{"value", "percent"}},
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": true}}
	case BarGauge:
		return map[string]any{"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": true,
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": true}}
	case BarChart:
		return map[string]any{"orientation": "auto", "stacking": "none", "xTickLabelRotation": 0, "legend": map[string]any{"displayMode": "list", "placement": "bottom"}}
	case Table:
		return map[string]any{"showHeader": true, "cellHeight": "sm"}
	}
	return map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom"}, "tooltip": map[string]any{"mode": "multi"}}
}

// JSON renders the dashboard as Grafana reads it from provisioning.
func (d Dashboard) JSON() ([]byte, error) {
	out := dashboardJSON{UID: d.UID, Title: d.Title, Description: d.Description, Tags: []string{"streamcdp"}, Editable: true,
		Refresh: "1m", SchemaVersion: 39, Time: map[string]string{"from": d.From, "to": "now"}, Links: []any{}}
	out.Annotations.List = []any{}
	out.Templating.List = []variableJSON{}
	for _, v := range d.Variables {
		vj := variableJSON{Name: v.Name, Label: v.Label, Type: "textbox", Query: v.Default}
		if v.Query != "" {
			vj.Type, vj.Hide, vj.Query, vj.Definition, vj.Datasource, vj.Refresh = "query", 2, v.Query, v.Query, &ds, 2
		}
		vj.Current.Text, vj.Current.Value = v.Default, v.Default
		if v.Multi {
			// Shown, every option selected by default ("All").
			vj.Hide, vj.Refresh, vj.Multi, vj.IncludeAll = 0, 1, true, true
			vj.Current.Text, vj.Current.Value = []string{"All"}, []string{"$__all"}
		}
		out.Templating.List = append(out.Templating.List, vj)
	}
	x, y, rowH := 0, 0, 0
	for i, p := range d.Panels {
		if x+p.W > 24 {
			x, y, rowH = 0, y+rowH, 0
		}
		qt, format := queryType(p.Kind)
		defaults := map[string]any{}
		if p.Unit != "" {
			defaults["unit"] = p.Unit
		}
		out.Panels = append(out.Panels, panelJSON{ID: i + 1, Type: p.Kind, Title: p.Title, Description: p.Description, Datasource: ds,
			GridPos:     gridPos{H: p.H, W: p.W, X: x, Y: y},
			FieldConfig: map[string]any{"defaults": defaults, "overrides": []any{}},
			Options:     options(p.Kind),
			Targets: []target{{Datasource: ds, EditorType: "sql", Format: format, QueryType: qt, RawSQL: p.SQL, RefID: "A",
				PluginVersion: PluginVersion}},
		})
		x += p.W
		rowH = max(rowH, p.H)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("rendering dashboard %s: %w", d.UID, err)
	}
	return b.Bytes(), nil
}
