package eval

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// CDNOWFile is the CDNOW sample inside the datasets directory.
const CDNOWFile = "cdnow/CDNOW_sample.txt"

// CDNOWTxn is one line of the CDNOW sample.
type CDNOWTxn struct {
	Customer int // the sample customer id, 1..2357
	Date     time.Time
	CDs      int
	Amount   float64 // dollars
}

// ReadCDNOW reads the CDNOW sample: whitespace-separated lines (CRLF line
// ends) of master id, sample id, date YYYYMMDD, number of CDs and dollar
// amount, without a header.
func ReadCDNOW(path string) ([]CDNOWTxn, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the CDNOW sample is not at %s: point --datasets (or CDP_DATASETS) at the directory holding %s (see the datasets README)", path, CDNOWFile)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the CDNOW sample: %w", err)
	}
	defer f.Close()
	var out []CDNOWTxn
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text()) // also drops the CR of CRLF
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 5 {
			return nil, fmt.Errorf("%s line %d: want 5 fields (master id, sample id, date, CDs, amount), got %d", path, line, len(fields))
		}
		id, err := strconv.Atoi(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: sample customer id %q: %w", path, line, fields[1], err)
		}
		d, err := time.Parse("20060102", fields[2])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: date: %w", path, line, err)
		}
		cds, err := strconv.Atoi(fields[3])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: number of CDs %q: %w", path, line, fields[3], err)
		}
		amt, err := strconv.ParseFloat(fields[4], 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: amount %q: %w", path, line, fields[4], err)
		}
		out = append(out, CDNOWTxn{Customer: id, Date: d, CDs: cds, Amount: amt})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no transactions", path)
	}
	return out, nil
}
