package generate

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/streamcdp/streamcdp/internal/datasets"
)

// Product is one catalogue entry. Prices are kept in pence so sums of revenue
// are exact and reproducible.
type Product struct {
	ID         string `json:"product_id"`
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"`
}

// catalogSeed fixes the built-in catalogue independently of Config.Seed, so
// product ids mean the same thing in every run.
const catalogSeed = 0x5eed_ca7a_1065

var defaultCategories = []struct {
	name  string
	nouns []string
	price float64 // typical price in pounds
}{
	{"kitchen", []string{"Tea Cup", "Mug", "Cake Tin", "Teapot", "Jam Jar", "Apron", "Lunch Box", "Egg Cup"}, 4},
	{"home decor", []string{"Photo Frame", "Wall Clock", "Cushion Cover", "Doorstop", "Coat Hanger", "Mirror", "Vase"}, 6},
	{"candles", []string{"T-Light Holder", "Lantern", "Candle", "Candle Pot", "Night Light"}, 3},
	{"bags", []string{"Jumbo Bag", "Lunch Bag", "Shopper", "Tote Bag", "Purse"}, 2.5},
	{"stationery", []string{"Notebook", "Greeting Card", "Wrapping Paper", "Pencil Set", "Sticker Sheet", "Gift Tag"}, 1.5},
	{"christmas", []string{"Bauble", "Christmas Tree Decoration", "Advent Calendar", "Star Garland", "Stocking"}, 3},
	{"garden", []string{"Watering Can", "Plant Pot", "Bird House", "Garden Sign", "Seed Tin"}, 5},
	{"toys", []string{"Spinning Top", "Skipping Rope", "Jigsaw", "Doll", "Building Blocks", "Kite"}, 4},
	{"jewellery", []string{"Necklace", "Bracelet", "Earrings", "Ring", "Hair Clip"}, 7},
	{"party", []string{"Paper Chain Kit", "Bunting", "Party Bags", "Cake Cases", "Napkins"}, 2},
}

var defaultAdjectives = []string{
	"Vintage", "Regency", "Retrospot", "Scandinavian", "Heart", "Polkadot", "Spotty",
	"Floral", "Antique", "Rustic", "Enamel", "Glass", "Wooden", "Ceramic", "Woodland",
}

var defaultColours = []string{"Red", "Pink", "Blue", "Green", "White", "Cream", "Ivory", "Black", "Silver", "Gold"}

// DefaultCatalog returns the built-in catalogue of 600 gift-shop products,
// identical in every run, in an arbitrary order that the generator treats as
// popularity rank.
func DefaultCatalog() []Product {
	r := rand.New(rand.NewPCG(catalogSeed, 1))
	seen := map[string]bool{}
	out := make([]Product, 0, 600)
	for len(out) < cap(out) {
		c := defaultCategories[r.IntN(len(defaultCategories))]
		name := defaultAdjectives[r.IntN(len(defaultAdjectives))] + " " +
			defaultColours[r.IntN(len(defaultColours))] + " " + c.nouns[r.IntN(len(c.nouns))]
		if seen[name] {
			continue
		}
		seen[name] = true
		code := strconv.Itoa(20000 + len(out)*97) // distinct five-digit codes
		if r.IntN(4) == 0 {
			code += string(rune('A' + r.IntN(6)))
		}
		price := c.price * math.Exp(r.NormFloat64()*0.5)
		cents := max(int64(math.Round(price*20))*5, 25) // in steps of 5p, at least 25p
		out = append(out, Product{ID: code, SKU: code, Name: name, Category: c.name, PriceCents: cents})
	}
	return out
}

// LoadCatalog builds a catalogue from the UCI Online Retail data set (the
// *.csv.gz parts in dir, see /work/shared/datasets/README.md): one product per
// stock code that looks like a product (five digits and an optional suffix),
// named by its most frequent description, priced by its most frequent unit
// price, and ordered by quantity sold so that the Zipf popularity follows the
// real best-sellers.
func LoadCatalog(dir string) ([]Product, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.csv.gz"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("catalog: no *.csv.gz files in %s", dir)
	}
	slices.Sort(files)
	type agg struct {
		qty    int64
		names  map[string]int
		prices map[int64]int
	}
	byCode := map[string]*agg{}
	for _, f := range files {
		if err := readRetailFile(f, func(code, desc string, qty, cents int64) {
			a := byCode[code]
			if a == nil {
				a = &agg{names: map[string]int{}, prices: map[int64]int{}}
				byCode[code] = a
			}
			a.qty += qty
			a.names[desc]++
			a.prices[cents]++
		}); err != nil {
			return nil, err
		}
	}
	out := make([]Product, 0, len(byCode))
	qty := make(map[string]int64, len(byCode))
	for code, a := range byCode {
		out = append(out, Product{
			ID: code, SKU: code,
			Name:       titleCase(mostFrequent(a.names)),
			PriceCents: mostFrequent(a.prices),
		})
		out[len(out)-1].Category = categoryOf(out[len(out)-1].Name)
		qty[code] = a.qty
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("catalog: no product rows in %s", dir)
	}
	slices.SortFunc(out, func(a, b Product) int {
		return cmp.Or(cmp.Compare(qty[b.ID], qty[a.ID]), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// readRetailFile calls row for each sale line of one gzip CSV part, skipping
// cancellations, non-product codes (postage, fees) and rows without a price.
func readRetailFile(path string, row func(code, desc string, qty, cents int64)) error {
	err := datasets.ReadRetailPart(path, func(r datasets.RetailRow) error {
		q, err1 := strconv.ParseInt(r.Quantity, 10, 64)
		p, err2 := strconv.ParseFloat(r.UnitPrice, 64)
		if err1 != nil || err2 != nil || q <= 0 || p <= 0 || r.Description == "" || !datasets.IsProductCode(r.StockCode) {
			return nil
		}
		row(r.StockCode, r.Description, q, int64(math.Round(p*100)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// mostFrequent returns the key with the highest count, the smallest on ties,
// so the result does not depend on map order.
func mostFrequent[K cmp.Ordered](m map[K]int) K {
	var best K
	n := -1
	for k, c := range m {
		if c > n || (c == n && k < best) {
			best, n = k, c
		}
	}
	return best
}

func titleCase(s string) string {
	words := strings.Fields(strings.ToLower(s))
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// categoryOf guesses a category from a product name; the data set has none.
func categoryOf(name string) string {
	n := strings.ToLower(name)
	for _, c := range []struct{ cat, words string }{
		{"christmas", "christmas xmas advent bauble"},
		{"candles", "candle t-light tealight lantern"},
		{"bags", "bag shopper tote purse"},
		{"stationery", "card paper notebook pencil sticker tag wrap"},
		{"kitchen", "mug cup teapot tin jar plate bowl cake spoon kitchen apron lunch"},
		{"garden", "garden plant pot bird watering"},
		{"toys", "toy doll game jigsaw skipping spinning kit"},
		{"jewellery", "necklace bracelet earrings ring clip"},
		{"party", "party bunting napkin garland"},
	} {
		for _, w := range strings.Fields(c.words) {
			if strings.Contains(n, w) {
				return c.cat
			}
		}
	}
	return "home decor"
}
