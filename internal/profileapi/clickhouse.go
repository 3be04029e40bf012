package profileapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseEvents is the EventStore over the warehouse's events table
// (deploy/clickhouse/migrations): a profile's events are those resolved
// to it or to any profile merged into it (the profile_canonical view
// follows merge chains), newest first.
type ClickHouseEvents struct {
	conn driver.Conn
}

// NewClickHouseEvents reads events through conn, whose default database
// holds the warehouse's tables.
func NewClickHouseEvents(conn driver.Conn) *ClickHouseEvents { return &ClickHouseEvents{conn: conn} }

// recentEventsSQL pages by keyset on (time, message_id), the order the
// API promises. The aliases subquery is the same as the Profile
// dashboard's.
const recentEventsSQL = `SELECT message_id, type, event, name, time, properties,
  product_id, category, order_id, currency, revenue
FROM events
WHERE profile_id IN (SELECT $1 UNION ALL SELECT alias_id FROM profile_canonical WHERE profile_id = $1)
  AND ($2 = 0 OR (time, message_id) < (fromUnixTimestamp64Micro($3, 'UTC'), $4))
ORDER BY time DESC, message_id DESC
LIMIT $5`

// RecentEvents implements EventStore. The warehouse keeps the typed
// commerce properties (product_id, category, order_id, currency,
// revenue) and a page or screen's name in columns of their own; they are
// put back into the event's properties.
func (c *ClickHouseEvents) RecentEvents(ctx context.Context, profileID string, after Cursor, limit int) ([]Event, bool, error) {
	var hasAfter uint8
	if !after.IsZero() {
		hasAfter = 1
	}
	rows, err := c.conn.Query(ctx, recentEventsSQL, profileID, hasAfter, after.Time.UnixMicro(), after.MessageID, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("querying the events of %s: %w", profileID, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			ev                                 Event
			event, name                        string
			props                              map[string]string
			product, category, order, currency string
			revenue                            float64
		)
		if err := rows.Scan(&ev.MessageID, &ev.Type, &event, &name, &ev.Timestamp, &props,
			&product, &category, &order, &currency, &revenue); err != nil {
			return nil, false, fmt.Errorf("reading an event of %s: %w", profileID, err)
		}
		ev.Event, ev.Timestamp = event, ev.Timestamp.UTC()
		ev.Properties = make(map[string]json.RawMessage, len(props)+6)
		for k, v := range props {
			if json.Valid([]byte(v)) {
				ev.Properties[k] = json.RawMessage(v)
			} else {
				ev.Properties[k] = quote(v)
			}
		}
		for k, v := range map[string]string{"name": name, "product_id": product, "category": category, "order_id": order, "currency": currency} {
			if v != "" {
				ev.Properties[k] = quote(v)
			}
		}
		if revenue != 0 {
			ev.Properties["revenue"] = json.RawMessage(strconv.FormatFloat(revenue, 'f', -1, 64))
		}
		if len(ev.Properties) == 0 {
			ev.Properties = nil
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading the events of %s: %w", profileID, err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

func quote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// compile-time check.
var _ EventStore = (*ClickHouseEvents)(nil)
