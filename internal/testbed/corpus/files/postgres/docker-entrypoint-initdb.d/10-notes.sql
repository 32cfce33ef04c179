-- What an image built FROM postgres adds: the application's schema, made
-- once, on the first start.
CREATE TABLE notes (
	id serial PRIMARY KEY,
	body text NOT NULL
);
