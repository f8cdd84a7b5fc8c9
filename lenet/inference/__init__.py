"""From a trained model to answers: preparing any image as MNIST was made (`preprocess`), predicting the
digit in it (`predict`, lenet-predict), scoring a model on a folder of labelled images (`score`, lenet-score), and
image files and PNG encoding shared by all of them (`images`)."""
