// Package datasets reads the real data sets the project uses for demos and
// evaluation (../shared/datasets, never copied into the repository).
package datasets

import (
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// RetailRow is one data row of a UCI Online Retail part, its fields
// trimmed but not parsed: the readers differ in what they keep.
type RetailRow struct {
	Line                                      int // in the file, the header being line 1
	Invoice, StockCode, Description, Customer string
	Quantity, UnitPrice, InvoiceDate, Country string
}

// ReadRetailPart calls row for every data row of one gzip CSV part of UCI
// Online Retail, in file order, and stops at the first error row returns.
// StockCode is upper-cased.
func ReadRetailPart(path string, row func(RetailRow) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening online retail part: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	r := csv.NewReader(gz)
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("reading the header of %s: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	cols := []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
	idx := make([]int, len(cols))
	for i, n := range cols {
		c, ok := col[n]
		if !ok {
			return fmt.Errorf("%s: no %s column in the header %q", path, n, header)
		}
		idx[i] = c
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		get := func(i int) string { return strings.TrimSpace(rec[idx[i]]) }
		if err := row(RetailRow{Line: line, Invoice: get(0), StockCode: strings.ToUpper(get(1)), Description: get(2),
			Quantity: get(3), InvoiceDate: get(4), UnitPrice: get(5), Customer: get(6), Country: get(7)}); err != nil {
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
	}
}

// IsProductCode accepts the retailer's product codes (85123A, 22423: five
// digits, then up to seven more characters) and rejects postage, bank
// charges, fees and manual adjustments (POST, BANK CHARGES, M, DOT, ...).
func IsProductCode(code string) bool {
	if len(code) < 5 || len(code) > 12 {
		return false
	}
	for i := range 5 {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}
