package generate

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestDefaultCatalog(t *testing.T) {
	a, b := DefaultCatalog(), DefaultCatalog()
	if !slices.Equal(a, b) {
		t.Fatal("DefaultCatalog differs between calls")
	}
	if len(a) != 600 {
		t.Fatalf("%d products, want 600", len(a))
	}
	ids := map[string]bool{}
	for _, p := range a {
		if ids[p.ID] {
			t.Fatalf("duplicate product id %s", p.ID)
		}
		ids[p.ID] = true
		if p.PriceCents < 25 || p.Name == "" || p.Category == "" || p.SKU == "" {
			t.Fatalf("bad product %+v", p)
		}
	}
}

// writeGz writes a small CSV part in the layout of the UCI Online Retail
// files, so the test does not need the data set.
func writeGz(t *testing.T, path, body string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCatalog(t *testing.T) {
	dir := t.TempDir()
	const header = `"row_id","InvoiceNo","StockCode","Description","Quantity","InvoiceDate","UnitPrice","CustomerID","Country"` + "\n"
	writeGz(t, filepath.Join(dir, "online_retail_2010-12.csv.gz"), header+
		`1,"536365","85123A","WHITE HANGING HEART T-LIGHT HOLDER",6,"2010-12-01 08:26:00",2.55,"17850","United Kingdom"`+"\n"+
		`2,"536365","71053","WHITE METAL LANTERN",6,"2010-12-01 08:26:00",3.39,"17850","United Kingdom"`+"\n"+
		`3,"536366","POST","POSTAGE",1,"2010-12-01 08:28:00",18,"17850","United Kingdom"`+"\n"+
		`4,"C536379","85123A","WHITE HANGING HEART T-LIGHT HOLDER",-2,"2010-12-01 09:41:00",2.55,"14527","United Kingdom"`+"\n")
	writeGz(t, filepath.Join(dir, "online_retail_2011-01.csv.gz"), header+
		`5,"540000","71053","WHITE METAL LANTERN",20,"2011-01-04 10:00:00",3.39,"","United Kingdom"`+"\n"+
		`6,"540001","71053","white metal lantern",1,"2011-01-04 10:00:00",4.25,"","United Kingdom"`+"\n"+
		`7,"540002","22423","REGENCY CAKESTAND 3 TIER",2,"2011-01-04 10:00:00",12.75,"","United Kingdom"`+"\n"+
		`8,"540003","22424","BROKEN PRICE",2,"2011-01-04 10:00:00",0,"","United Kingdom"`+"\n")

	got, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Product{ // by quantity sold: 27, 6, 2
		{ID: "71053", SKU: "71053", Name: "White Metal Lantern", Category: "candles", PriceCents: 339},
		{ID: "85123A", SKU: "85123A", Name: "White Hanging Heart T-light Holder", Category: "candles", PriceCents: 255},
		{ID: "22423", SKU: "22423", Name: "Regency Cakestand 3 Tier", Category: "kitchen", PriceCents: 1275},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}

	if _, err := LoadCatalog(t.TempDir()); err == nil {
		t.Fatal("empty directory: want an error")
	}
}
