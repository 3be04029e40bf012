package eval

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/internal/datasets"
)

// RetailDir is the UCI Online Retail directory inside the datasets directory.
const RetailDir = "online-retail"

// Basket is one invoice of one customer: the distinct product codes bought.
type Basket struct {
	Customer string
	Invoice  string
	Time     time.Time // earliest InvoiceDate of the invoice's rows (store-local time, read as UTC)
	Items    []string  // distinct stock codes, sorted
}

// RetailStats counts what LoadRetail read and why rows were left out. A row
// is counted under the first rule it fails, in the order of the fields.
type RetailStats struct {
	Files       int `json:"files"`
	Rows        int `json:"rows"`
	NoCustomer  int `json:"rows_without_customer"`
	Cancelled   int `json:"cancellation_rows"`
	NonProduct  int `json:"non_product_rows"`
	NonPositive int `json:"non_positive_rows"`
	Used        int `json:"rows_used"`
	Baskets     int `json:"baskets"`
	Customers   int `json:"customers"`
	Items       int `json:"items"`
}

// LoadRetail reads the gzip CSV parts (online_retail_*.csv.gz) in dir and
// returns the baskets sorted by time, then invoice. Rules, and why:
//   - rows without a CustomerID are dropped: a basket must belong to someone;
//   - cancellations (InvoiceNo starting with C) are dropped and do not remove
//     the original purchase: a return still says the customer chose the item,
//     and the evaluation predicts what is ordered, not what is kept;
//   - non-product stock codes (POST, DOT, M, D, C2, BANK CHARGES, AMAZONFEE,
//     CRUK, PADS, gift vouchers…) are dropped: postage and fees are not
//     recommendations. A product code starts with five digits, the rule of
//     internal/generate's catalogue;
//   - rows with quantity or unit price ≤ 0 are dropped (adjustments, samples);
//   - an invoice is one basket of distinct stock codes (quantities ignored);
//     an invoice left empty by these rules is no basket.
func LoadRetail(dir string) ([]Basket, RetailStats, error) {
	var st RetailStats
	files, err := filepath.Glob(filepath.Join(dir, "online_retail_*.csv.gz"))
	if err != nil {
		return nil, st, fmt.Errorf("listing %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, st, fmt.Errorf("no online_retail_*.csv.gz files in %s: point --datasets (or CDP_DATASETS) at the directory holding %s/ (see the datasets README)", dir, RetailDir)
	}
	slices.Sort(files)
	type inv struct {
		customer string
		t        time.Time
		items    map[string]bool
	}
	invoices := map[string]*inv{}
	for _, f := range files {
		st.Files++
		if err := readRetailFile(f, &st, func(invoice, code, customer string, t time.Time) error {
			b := invoices[invoice]
			if b == nil {
				b = &inv{customer: customer, t: t, items: map[string]bool{}}
				invoices[invoice] = b
			}
			if b.customer != customer {
				return fmt.Errorf("invoice %s belongs to customers %s and %s", invoice, b.customer, customer)
			}
			if t.Before(b.t) {
				b.t = t
			}
			b.items[code] = true
			return nil
		}); err != nil {
			return nil, st, err
		}
	}
	out := make([]Basket, 0, len(invoices))
	customers := map[string]bool{}
	items := map[string]bool{}
	for no, b := range invoices {
		codes := make([]string, 0, len(b.items))
		for c := range b.items {
			codes = append(codes, c)
			items[c] = true
		}
		slices.Sort(codes)
		out = append(out, Basket{Customer: b.customer, Invoice: no, Time: b.t, Items: codes})
		customers[b.customer] = true
	}
	slices.SortFunc(out, func(a, b Basket) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Invoice, b.Invoice)) })
	st.Baskets, st.Customers, st.Items = len(out), len(customers), len(items)
	return out, st, nil
}

// readRetailFile calls row for every row of one part that passes the rules
// of LoadRetail, counting the others in st.
func readRetailFile(path string, st *RetailStats, row func(invoice, code, customer string, t time.Time) error) error {
	return datasets.ReadRetailPart(path, func(r datasets.RetailRow) error {
		st.Rows++
		switch {
		case r.Customer == "" || r.Customer == "NA":
			st.NoCustomer++
			return nil
		case strings.HasPrefix(r.Invoice, "C"):
			st.Cancelled++
			return nil
		case !datasets.IsProductCode(r.StockCode):
			st.NonProduct++
			return nil
		}
		q, err := strconv.ParseFloat(r.Quantity, 64)
		if err != nil {
			return fmt.Errorf("quantity %q: %w", r.Quantity, err)
		}
		p, err := strconv.ParseFloat(r.UnitPrice, 64)
		if err != nil {
			return fmt.Errorf("unit price %q: %w", r.UnitPrice, err)
		}
		if q <= 0 || p <= 0 {
			st.NonPositive++
			return nil
		}
		t, err := time.Parse(time.DateTime, r.InvoiceDate)
		if err != nil {
			return fmt.Errorf("invoice date: %w", err)
		}
		st.Used++
		return row(r.Invoice, r.StockCode, strings.TrimSuffix(r.Customer, ".0"), t)
	})
}
