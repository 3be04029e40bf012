package eval

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const retailHeader = `"row_id","InvoiceNo","StockCode","Description","Quantity","InvoiceDate","UnitPrice","CustomerID","Country"` + "\n"

func writeGz(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRetail(t *testing.T) {
	dir := t.TempDir()
	writeGz(t, filepath.Join(dir, "online_retail_2010-12.csv.gz"), retailHeader+
		`1,"536365","85123A","X",6,"2010-12-01 08:26:00",2.55,"17850","United Kingdom"
2,"536365","71053","Y",6,"2010-12-01 08:25:00",3.39,"17850","United Kingdom"
3,"536365","85123a","X",2,"2010-12-01 08:26:00",2.55,"17850","United Kingdom"
4,"536366","POST","POSTAGE",1,"2010-12-01 09:00:00",18,"17850","United Kingdom"
5,"C536367","85123A","X",-1,"2010-12-02 10:00:00",2.55,"17850","United Kingdom"
6,"536368","22423","Z",1,"2010-12-03 10:00:00",12.75,"","United Kingdom"
7,"536369","22423","Z",0,"2010-12-03 11:00:00",12.75,"13047","United Kingdom"
8,"536370","22423","Z",1,"2010-12-03 12:00:00",12.75,"13047","United Kingdom"
`)
	writeGz(t, filepath.Join(dir, "online_retail_2011-01.csv.gz"), retailHeader+
		`9,"536371","85123A","X",1,"2011-01-05 12:00:00",2.55,"13047","United Kingdom"
`)
	baskets, st, err := LoadRetail(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := RetailStats{Files: 2, Rows: 9, NoCustomer: 1, Cancelled: 1, NonProduct: 1, NonPositive: 1, Used: 5, Baskets: 3, Customers: 2, Items: 3}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	type b struct {
		customer, invoice, time string
		items                   []string
	}
	wantB := []b{
		{"17850", "536365", "2010-12-01 08:25:00", []string{"71053", "85123A"}}, // earliest row's time; 85123a is 85123A
		{"13047", "536370", "2010-12-03 12:00:00", []string{"22423"}},
		{"13047", "536371", "2011-01-05 12:00:00", []string{"85123A"}},
	}
	if len(baskets) != len(wantB) {
		t.Fatalf("baskets %+v", baskets)
	}
	for i, w := range wantB {
		g := baskets[i]
		if g.Customer != w.customer || g.Invoice != w.invoice || g.Time.Format(time.DateTime) != w.time || !slices.Equal(g.Items, w.items) {
			t.Errorf("basket %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestLoadRetailErrors(t *testing.T) {
	if _, _, err := LoadRetail(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no online_retail_*.csv.gz") {
		t.Errorf("empty directory: %v", err)
	}
	dir := t.TempDir()
	writeGz(t, filepath.Join(dir, "online_retail_2010-12.csv.gz"), retailHeader+
		`1,"536365","85123A","X",six,"2010-12-01 08:26:00",2.55,"17850","United Kingdom"
`)
	if _, _, err := LoadRetail(dir); err == nil || !strings.Contains(err.Error(), "line 2: quantity") {
		t.Errorf("bad quantity: %v", err)
	}
	dir = t.TempDir()
	writeGz(t, filepath.Join(dir, "online_retail_2010-12.csv.gz"), `"a","b"`+"\n1,2\n")
	if _, _, err := LoadRetail(dir); err == nil || !strings.Contains(err.Error(), "no InvoiceNo column") {
		t.Errorf("bad header: %v", err)
	}
}

func TestReadCDNOW(t *testing.T) {
	path := filepath.Join(t.TempDir(), "CDNOW_sample.txt")
	content := " 00004 0001 19970101  2\t  29.33\r\n 00004 0001 19970118  2   29.73\r\n\r\n 00021 0002 19970101  3   63.34\r\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCDNOW(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []CDNOWTxn{
		{1, time.Date(1997, 1, 1, 0, 0, 0, 0, time.UTC), 2, 29.33},
		{1, time.Date(1997, 1, 18, 0, 0, 0, 0, time.UTC), 2, 29.73},
		{2, time.Date(1997, 1, 1, 0, 0, 0, 0, time.UTC), 3, 63.34},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := ReadCDNOW(filepath.Join(t.TempDir(), "none.txt")); err == nil || !strings.Contains(err.Error(), "CDNOW sample is not at") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("1 2 19970101 3\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCDNOW(path); err == nil || !strings.Contains(err.Error(), "line 1: want 5 fields") {
		t.Errorf("short line: %v", err)
	}
}
